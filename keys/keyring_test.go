package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/atauth/atauth"
)

func secret(fill byte) []byte { return bytes.Repeat([]byte{fill}, SecretSize) }

func TestNewSealingKey(t *testing.T) {
	got, err := NewSealingKey("2026-06", bytes.NewReader(secret(7)))
	if err != nil {
		t.Fatalf("NewSealingKey: %v", err)
	}
	if diff := cmp.Diff(atauth.SealingKey{ID: "2026-06", Secret: secret(7)}, got); diff != "" {
		t.Errorf("NewSealingKey (-want +got):\n%s", diff)
	}

	a, err := NewSealingKey("a", nil)
	if err != nil {
		t.Fatalf("NewSealingKey with crypto/rand: %v", err)
	}
	b, err := NewSealingKey("b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Secret) != SecretSize || bytes.Equal(a.Secret, b.Secret) {
		t.Errorf("NewSealingKey(nil): got secrets %x and %x, want two different %d-byte secrets", a.Secret, b.Secret, SecretSize)
	}

	if _, err := NewSealingKey("k", bytes.NewReader(secret(1)[:31])); err == nil {
		t.Error("NewSealingKey with a short reader: got no error")
	}
	if _, err := NewSealingKey("k", iotest.ErrReader(errors.New("boom"))); err == nil {
		t.Error("NewSealingKey with a failing reader: got no error")
	}
	for _, id := range []string{"", "seventeen-chars-x", "has space", "tab\t", "é"} {
		if _, err := NewSealingKey(id, bytes.NewReader(secret(1))); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewSealingKey(%q): got %v, want ErrInvalidKey", id, err)
		}
	}
}

func TestKeyringRoundTrip(t *testing.T) {
	ring := []atauth.SealingKey{
		{ID: "new", Secret: secret(2)},
		{ID: "a:b", Secret: secret(0xfb)}, // base64url of 0xfb… has - and _
		{ID: "!~", Secret: secret(0)},
	}
	b := FormatKeyring(ring)
	if got, want := strings.Count(string(b), "\n"), 3; got != want {
		t.Errorf("FormatKeyring: got %d lines, want %d:\n%s", got, want, b)
	}
	got, err := ParseKeyring(b)
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	if diff := cmp.Diff(ring, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseKeyringAccepts(t *testing.T) {
	want := []atauth.SealingKey{{ID: "k2", Secret: secret(0xfb)}, {ID: "k1", Secret: secret(1)}}
	url := base64.RawURLEncoding.EncodeToString(secret(0xfb))
	std := base64.StdEncoding.EncodeToString(secret(0xfb))
	one := base64.RawURLEncoding.EncodeToString(secret(1))
	for name, in := range map[string]string{
		"lines":               "k2:" + url + "\nk1:" + one + "\n",
		"CRLF and blanks":     "\r\n\r\nk2:" + url + "\r\n\r\nk1:" + one,
		"spaces (env var)":    " k2:" + url + " k1:" + one + " ",
		"standard base64":     "k2:" + std + "\nk1:" + one,
		"unpadded std":        "k2:" + strings.TrimRight(std, "=") + "\nk1:" + one,
		"padded url base64":   "k2:" + base64.URLEncoding.EncodeToString(secret(0xfb)) + "\nk1:" + one,
		"no trailing newline": "k2:" + url + "\nk1:" + one,
	} {
		got, err := ParseKeyring([]byte(in))
		if err != nil {
			t.Errorf("%s: ParseKeyring: %v", name, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: ParseKeyring (-want +got):\n%s", name, diff)
		}
	}
}

func TestParseKeyringRejects(t *testing.T) {
	s := base64.RawURLEncoding.EncodeToString(secret(9))
	for name, in := range map[string]string{
		"empty":              "",
		"blank":              " \n\n",
		"no colon":           s,
		"empty id":           ":" + s,
		"long id":            "seventeen-chars-x:" + s,
		"control char id":    "k\x7f:" + s,
		"duplicate id":       "k:" + s + "\nk:" + s,
		"short secret":       "k:" + base64.RawURLEncoding.EncodeToString(secret(9)[:31]),
		"long secret":        "k:" + s + "AAAA",
		"not base64":         "k:" + strings.Repeat("!", 43),
		"empty secret":       "k:",
		"second entry bad":   "k:" + s + "\nj:" + s[:40],
		"mixed alphabets":    "k:" + "-+" + s[2:],
		"secret split by ws": "k:" + s[:20] + " " + s[20:],
		"secret as the id":   s + ":",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKeyring([]byte(in))
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("got error %v, want ErrInvalidKey", err)
			}
			if !strings.HasPrefix(err.Error(), "atauth: keys: ") {
				t.Errorf("error %q lacks the atauth: keys: prefix", err)
			}
			if strings.Contains(err.Error(), s[:20]) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestLoadKeyring(t *testing.T) {
	ring := []atauth.SealingKey{{ID: "k", Secret: secret(3)}}
	got, err := LoadKeyring(writeFile(t, "keyring", FormatKeyring(ring)))
	if err != nil {
		t.Fatalf("LoadKeyring: %v", err)
	}
	if diff := cmp.Diff(ring, got); diff != "" {
		t.Errorf("LoadKeyring (-want +got):\n%s", diff)
	}
	bad := writeFile(t, "bad", []byte("k:short"))
	if _, err := LoadKeyring(bad); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadKeyring(bad): got %v, want ErrInvalidKey naming %s", err, bad)
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadKeyring(missing): got %v, want fs.ErrNotExist", err)
	}
}
