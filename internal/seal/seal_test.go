package seal

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func testKey(id string, fill byte) Key {
	return Key{ID: id, Secret: bytes.Repeat([]byte{fill}, SecretSize)}
}

func mustKeyring(t testing.TB, keys ...Key) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := mustKeyring(t, testKey("k1", 1))
	for _, pt := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("abc"), 10000)} {
		for _, ad := range [][]byte{nil, []byte("session:abc")} {
			sealed, err := k.Seal(pt, ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			got, err := k.Open(sealed, ad)
			if err != nil {
				t.Fatalf("Open(len %d, ad %q): %v", len(pt), ad, err)
			}
			if !bytes.Equal(got, pt) {
				t.Errorf("Open: got %d bytes, want %d bytes %q", len(got), len(pt), pt)
			}
		}
	}
}

func TestFormat(t *testing.T) {
	nonce := bytes.Repeat([]byte{0xAA}, nonceSize)
	k := mustKeyring(t, testKey("key-2024", 1))
	k.Rand = bytes.NewReader(nonce)
	sealed, err := k.Seal([]byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantPrefix := append([]byte{1, 8}, "key-2024"...)
	wantPrefix = append(wantPrefix, nonce...)
	if !bytes.HasPrefix(sealed, wantPrefix) {
		t.Errorf("sealed prefix: got %x, want %x", sealed[:min(len(sealed), len(wantPrefix))], wantPrefix)
	}
	if got, want := len(sealed), len(wantPrefix)+len("hello")+tagSize; got != want {
		t.Errorf("sealed length: got %d, want %d", got, want)
	}
	if got, want := k.SealingKeyID(), "key-2024"; got != want {
		t.Errorf("SealingKeyID: got %q, want %q", got, want)
	}
}

func TestNoncesDiffer(t *testing.T) {
	k := mustKeyring(t, testKey("k1", 1))
	a, _ := k.Seal([]byte("same"), nil)
	b, _ := k.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Errorf("two seals of the same plaintext: got equal outputs %x, want different", a)
	}
}

func TestRandError(t *testing.T) {
	k := mustKeyring(t, testKey("k1", 1))
	k.Rand = bytes.NewReader([]byte{1, 2, 3}) // shorter than a nonce
	if _, err := k.Seal([]byte("x"), nil); err == nil {
		t.Errorf("Seal with a short random source: got nil error, want an error")
	}
}

func TestRotation(t *testing.T) {
	old := mustKeyring(t, testKey("old", 1))
	sealedOld, err := old.Seal([]byte("before"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}

	rotated := mustKeyring(t, testKey("new", 2), testKey("old", 1))
	got, err := rotated.Open(sealedOld, []byte("ad"))
	if err != nil {
		t.Fatalf("Open of a value sealed with the old key: %v", err)
	}
	if string(got) != "before" {
		t.Errorf("Open: got %q, want %q", got, "before")
	}

	sealedNew, err := rotated.Seal([]byte("after"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(sealedNew[2:2+sealedNew[1]]), "new"; got != want {
		t.Errorf("key id in a value sealed after rotation: got %q, want %q", got, want)
	}
	// The old ring does not know the new key.
	if _, err := old.Open(sealedNew, []byte("ad")); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open with a ring lacking the key: got %v, want ErrUnknownKey", err)
	}
}

func TestSameIDDifferentSecret(t *testing.T) {
	a := mustKeyring(t, testKey("k1", 1))
	b := mustKeyring(t, testKey("k1", 2))
	sealed, _ := a.Seal([]byte("x"), nil)
	if _, err := b.Open(sealed, nil); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with a different secret under the same id: got %v, want ErrDecrypt", err)
	}
}

func TestTamper(t *testing.T) {
	k := mustKeyring(t, testKey("k1", 1), testKey("k2", 2))
	sealed, err := k.Seal([]byte("secret tokens"), []byte("rec-1"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(sealed)
			bad[i] ^= bit
			if got, err := k.Open(bad, []byte("rec-1")); err == nil {
				t.Errorf("Open with byte %d flipped by %#x: got %q and nil error, want an error", i, bit, got)
			}
		}
	}
	for n := range sealed {
		if _, err := k.Open(sealed[:n], []byte("rec-1")); err == nil {
			t.Errorf("Open of the first %d bytes: got nil error, want an error", n)
		}
	}
	if _, err := k.Open(append(bytes.Clone(sealed), 0), []byte("rec-1")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with a byte appended: got %v, want ErrDecrypt", err)
	}
}

func TestWrongAdditionalData(t *testing.T) {
	k := mustKeyring(t, testKey("k1", 1))
	sealed, _ := k.Seal([]byte("x"), []byte("rec-1"))
	for _, ad := range [][]byte{nil, []byte("rec-2"), []byte("rec-1 "), []byte("rec-")} {
		if _, err := k.Open(sealed, ad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open with additional data %q: got %v, want ErrDecrypt", ad, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	k := mustKeyring(t, testKey("k1", 1))
	valid, _ := k.Seal([]byte("x"), nil)
	unknown := bytes.Clone(valid)
	unknown[3] = '9' // "k1" → "k9"
	wrongVersion := bytes.Clone(valid)
	wrongVersion[0] = 2
	zeroID := append([]byte{1, 0}, make([]byte, 40)...)
	longID := append([]byte{1, 17}, make([]byte, 60)...)

	tests := []struct {
		name   string
		sealed []byte
		want   error
	}{
		{"empty", nil, ErrMalformed},
		{"version only", []byte{1}, ErrMalformed},
		{"wrong version", wrongVersion, ErrMalformed},
		{"empty key id", zeroID, ErrMalformed},
		{"key id too long", longID, ErrMalformed},
		{"too short for nonce and tag", valid[:len(valid)-2], ErrMalformed},
		{"unknown key", unknown, ErrUnknownKey},
	}
	for _, tt := range tests {
		if _, err := k.Open(tt.sealed, nil); !errors.Is(err, tt.want) {
			t.Errorf("Open(%s): got %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, err := range []error{ErrMalformed, ErrUnknownKey, ErrDecrypt} {
		if !strings.HasPrefix(err.Error(), "atauth: seal: ") {
			t.Errorf("error %q: want prefix %q", err, "atauth: seal: ")
		}
	}
}

func TestNewKeyringErrors(t *testing.T) {
	tests := []struct {
		name string
		keys []Key
	}{
		{"no keys", nil},
		{"short secret", []Key{{ID: "a", Secret: make([]byte, 16)}}},
		{"long secret", []Key{{ID: "a", Secret: make([]byte, 33)}}},
		{"empty id", []Key{testKey("", 1)}},
		{"id too long", []Key{testKey(strings.Repeat("a", 17), 1)}},
		{"id with space", []Key{testKey("a b", 1)}},
		{"id with control character", []Key{testKey("a\n", 1)}},
		{"id not ASCII", []Key{testKey("clé", 1)}},
		{"duplicate id", []Key{testKey("a", 1), testKey("a", 2)}},
		{"bad second key", []Key{testKey("a", 1), {ID: "b"}}},
	}
	for _, tt := range tests {
		if k, err := NewKeyring(tt.keys); err == nil {
			t.Errorf("NewKeyring(%s): got %v and nil error, want an error", tt.name, k)
		}
	}
	if _, err := NewKeyring([]Key{testKey(strings.Repeat("z", 16), 1), testKey("!~", 2)}); err != nil {
		t.Errorf("NewKeyring with 16- and 2-character ids: got %v, want nil", err)
	}
}

func TestSecretNotRetained(t *testing.T) {
	key := testKey("k1", 1)
	k := mustKeyring(t, key)
	sealed, _ := k.Seal([]byte("x"), nil)
	clear(key.Secret)
	if _, err := k.Open(sealed, nil); err != nil {
		t.Errorf("Open after the caller cleared its secret: got %v, want nil", err)
	}
}

func FuzzOpen(f *testing.F) {
	k := mustKeyring(f, testKey("k1", 1), testKey("k2", 2))
	for _, pt := range []string{"", "x", "a longer plaintext value"} {
		sealed, err := k.Seal([]byte(pt), []byte("ad"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed, []byte("ad"))
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 255}, []byte("ad"))
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		_, err := k.Open(sealed, ad)
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open: got error %v, want one of ErrMalformed, ErrUnknownKey, ErrDecrypt", err)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	k := mustKeyring(b, testKey("k1", 1))
	pt := make([]byte, 1024)
	ad := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(pt, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := mustKeyring(b, testKey("k1", 1))
	pt := make([]byte, 1024)
	ad := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	sealed, err := k.Seal(pt, ad)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(sealed, ad); err != nil {
			b.Fatal(err)
		}
	}
}
