package keys

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
)

func newClientKey(t *testing.T, kid string) atauth.ClientKey {
	t.Helper()
	k, err := NewClientKey(kid)
	if err != nil {
		t.Fatalf("NewClientKey: %v", err)
	}
	return k
}

func marshal(t *testing.T, k atauth.ClientKey) []byte {
	t.Helper()
	b, err := MarshalClientKeyJWK(k)
	if err != nil {
		t.Fatalf("MarshalClientKeyJWK: %v", err)
	}
	return b
}

// members decodes a JWK into its members.
func members(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return m
}

func TestClientKeyRoundTrip(t *testing.T) {
	for _, nbf := range []time.Time{{}, time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)} {
		k := newClientKey(t, "2026-06")
		k.NotBefore = nbf
		got, err := ParseClientKeyJWK(marshal(t, k))
		if err != nil {
			t.Fatalf("ParseClientKeyJWK: %v", err)
		}
		if got.ID != k.ID {
			t.Errorf("ID: got %q, want %q", got.ID, k.ID)
		}
		if !got.Key.Equal(k.Key) {
			t.Errorf("Key: got a different private key")
		}
		if !got.NotBefore.Equal(nbf) || got.NotBefore.IsZero() != nbf.IsZero() {
			t.Errorf("NotBefore: got %v, want %v", got.NotBefore, nbf)
		}
	}
}

func TestMarshalClientKeyJWKMembers(t *testing.T) {
	k := newClientKey(t, "k1")
	k.NotBefore = time.Unix(1780000000, 999_000_000)
	m := members(t, marshal(t, k))
	for name, want := range map[string]any{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig", "nbf": 1780000000.0} {
		if m[name] != want {
			t.Errorf("%s: got %v, want %v", name, m[name], want)
		}
	}
	if got, want := len(m), 9; got != want {
		t.Errorf("got %d members %v, want %d", got, m, want)
	}
	if _, ok := members(t, marshal(t, newClientKey(t, "k2")))["nbf"]; ok {
		t.Errorf("a key with a zero NotBefore has an nbf member")
	}
}

// TestCanonicalCoordinates checks that x, y and d keep their leading zero
// bytes, which big.Int.Bytes would drop for about one key in 256.
func TestCanonicalCoordinates(t *testing.T) {
	for i := 0; ; i++ {
		if i == 20000 {
			t.Fatal("no key with a leading zero byte in x in 20000 tries")
		}
		k := newClientKey(t, "k")
		pub, err := k.Key.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if pub[1] != 0 {
			continue
		}
		m := members(t, marshal(t, k))
		for _, name := range []string{"x", "y", "d"} {
			b, err := base64.RawURLEncoding.DecodeString(m[name].(string))
			if err != nil || len(b) != 32 {
				t.Errorf("%s: got %d bytes (err %v), want 32", name, len(b), err)
			}
		}
		return
	}
}

func TestJWXInterop(t *testing.T) {
	k := newClientKey(t, "ours")
	parsed, err := jwk.ParseKey(marshal(t, k))
	if err != nil {
		t.Fatalf("jwk.ParseKey of our JWK: %v", err)
	}
	var raw ecdsa.PrivateKey
	if err := parsed.Raw(&raw); err != nil {
		t.Fatalf("Raw: %v", err)
	}
	if !raw.Equal(k.Key) {
		t.Errorf("jwx read a different private key")
	}

	theirs, err := jwk.FromRaw(newClientKey(t, "x").Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := theirs.Set(jwk.KeyIDKey, "theirs"); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(theirs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseClientKeyJWK(b)
	if err != nil {
		t.Fatalf("ParseClientKeyJWK of a jwx JWK: %v", err)
	}
	if got.ID != "theirs" {
		t.Errorf("ID: got %q, want %q", got.ID, "theirs")
	}
}

func TestParseClientKeyJWKRejects(t *testing.T) {
	k := newClientKey(t, "k1")
	good := members(t, marshal(t, k))
	other := members(t, marshal(t, newClientKey(t, "k2")))
	with := func(changes map[string]any) string {
		m := make(map[string]any, len(good))
		for name, v := range good {
			m[name] = v
		}
		for name, v := range changes {
			if v == nil {
				delete(m, name)
			} else {
				m[name] = v
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	padded := base64.URLEncoding.EncodeToString(make([]byte, 32))
	for name, in := range map[string]string{
		"not JSON":         `{"kty":`,
		"array":            `[]`,
		"RSA":              with(map[string]any{"kty": "RSA"}),
		"P-384":            with(map[string]any{"crv": "P-384"}),
		"no kid":           with(map[string]any{"kid": nil}),
		"empty kid":        with(map[string]any{"kid": ""}),
		"numeric kid":      with(map[string]any{"kid": 7}),
		"alg RS256":        with(map[string]any{"alg": "RS256"}),
		"use enc":          with(map[string]any{"use": "enc"}),
		"public key":       with(map[string]any{"d": nil}),
		"upper-case D":     with(map[string]any{"d": nil, "D": good["d"]}),
		"short d":          with(map[string]any{"d": "AAAA"}),
		"padded d":         with(map[string]any{"d": padded}),
		"zero d":           with(map[string]any{"d": base64.RawURLEncoding.EncodeToString(make([]byte, 32))}),
		"d of another key": with(map[string]any{"d": other["d"]}),
		"x of another key": with(map[string]any{"x": other["x"]}),
		"y missing":        with(map[string]any{"y": nil}),
		"negative nbf":     with(map[string]any{"nbf": -1}),
		"fractional nbf":   with(map[string]any{"nbf": 1.5}),
		"nbf as a string":  with(map[string]any{"nbf": "2026-01-01T00:00:00Z"}),
		"d not base64":     with(map[string]any{"d": strings.Repeat("!", 43)}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseClientKeyJWK([]byte(in))
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("got error %v, want ErrInvalidKey", err)
			}
			if !strings.HasPrefix(err.Error(), "atauth: keys: ") {
				t.Errorf("error %q lacks the atauth: keys: prefix", err)
			}
			if strings.Contains(err.Error(), good["d"].(string)) {
				t.Errorf("error %q contains the private key", err)
			}
		})
	}
}

func TestMarshalRejects(t *testing.T) {
	k := newClientKey(t, "k")
	for name, bad := range map[string]atauth.ClientKey{
		"no id":  {Key: k.Key},
		"no key": {ID: "k"},
	} {
		if _, err := MarshalClientKeyJWK(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("MarshalClientKeyJWK(%s): got %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := MarshalPublicJWKS([]atauth.ClientKey{k, k}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("MarshalPublicJWKS(duplicate ids): got %v, want ErrInvalidKey", err)
	}
	if _, err := NewClientKey(""); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewClientKey(\"\"): got %v, want ErrInvalidKey", err)
	}
}

func TestThumbprintMatchesJWX(t *testing.T) {
	k := newClientKey(t, "k")
	got, err := Thumbprint(k.Key)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jwk.FromRaw(&k.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	want, err := j.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("Thumbprint: got %x, want %x", got, want)
	}
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadClientKeys(t *testing.T) {
	k1, k2 := newClientKey(t, "k1"), newClientKey(t, "k2")
	p1, p2 := writeFile(t, "k1.json", marshal(t, k1)), writeFile(t, "k2.json", marshal(t, k2))
	got, err := LoadClientKeys(p1, p2)
	if err != nil {
		t.Fatalf("LoadClientKeys: %v", err)
	}
	if len(got) != 2 || got[0].ID != "k1" || got[1].ID != "k2" {
		t.Errorf("LoadClientKeys: got %d keys %v, want k1 and k2", len(got), got)
	}
	if _, err := LoadClientKeys(p1, p1); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("LoadClientKeys(same file twice): got %v, want ErrInvalidKey", err)
	}

	bad := writeFile(t, "bad.json", []byte(`{}`))
	_, err = LoadClientKey(bad)
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadClientKey(bad): got %v, want ErrInvalidKey naming %s", err, bad)
	}
	if _, err := LoadClientKey(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadClientKey(missing): got %v, want fs.ErrNotExist", err)
	}
}

// TestKeysWorkInNew checks that keys made and read back by this package
// configure a confidential client, and that MarshalPublicJWKS publishes what
// the Manager publishes.
func TestKeysWorkInNew(t *testing.T) {
	ck1, err := ParseClientKeyJWK(marshal(t, newClientKey(t, "k1")))
	if err != nil {
		t.Fatal(err)
	}
	next := newClientKey(t, "k2")
	next.NotBefore = time.Now().Add(24 * time.Hour)
	ck2, err := ParseClientKeyJWK(marshal(t, next))
	if err != nil {
		t.Fatal(err)
	}
	sk1, err := NewSealingKey("old", nil)
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := NewSealingKey("new", nil)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := ParseKeyring(FormatKeyring([]atauth.SealingKey{sk2, sk1}))
	if err != nil {
		t.Fatal(err)
	}
	clientKeys := []atauth.ClientKey{ck1, ck2}
	m, err := atauth.New(atauth.Config{
		ClientID:    "https://app.example.com/oauth-client-metadata.json",
		RedirectURL: "https://app.example.com/auth/callback",
		ClientKeys:  clientKeys,
		SealingKeys: ring,
		Store:       memstore.New(),
	})
	if err != nil {
		t.Fatalf("atauth.New: %v", err)
	}
	published, ok := m.JWKS()
	if !ok {
		t.Fatal("JWKS: not ok for a confidential client")
	}
	ours, err := MarshalPublicJWKS(clientKeys)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(members(t, published), members(t, ours)); diff != "" {
		t.Errorf("MarshalPublicJWKS differs from Manager.JWKS (-manager +ours):\n%s", diff)
	}
	if strings.Contains(string(ours), `"d"`) {
		t.Errorf("MarshalPublicJWKS: got a private member in %s", ours)
	}
}
