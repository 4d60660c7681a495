package oauthclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

func TestNewKeySignerRejects(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := mustKey(t)
	tests := []struct {
		name string
		keys []SigningKey
	}{
		{"no keys", nil},
		{"empty kid", []SigningKey{{ID: "", Key: k}}},
		{"duplicate kid", []SigningKey{{ID: "a", Key: k}, {ID: "a", Key: mustKey(t)}}},
		{"P-384", []SigningKey{{ID: "a", Key: p384}}},
		{"nil key", []SigningKey{{ID: "a"}}},
	}
	for _, tt := range tests {
		if _, err := NewKeySigner(tt.keys); err == nil {
			t.Errorf("%s: got nil error; want an error", tt.name)
		}
	}
}

func TestKeySignerRotation(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old, cur, next := mustKey(t), mustKey(t), mustKey(t)
	s := mustSigner(t,
		SigningKey{ID: "old", Key: old, NotBefore: now.Add(-48 * time.Hour)},
		SigningKey{ID: "next", Key: next, NotBefore: now.Add(24 * time.Hour)},
		SigningKey{ID: "cur", Key: cur, NotBefore: now.Add(-time.Hour)},
	)
	tests := []struct {
		at      time.Time
		wantKID string
		key     *ecdsa.PrivateKey
	}{
		{now, "cur", cur},
		{now.Add(-2 * time.Hour), "old", old},
		{now.Add(24 * time.Hour), "next", next},
	}
	for _, tt := range tests {
		a, err := s.Assertion(tt.at, rand.Reader, "", testClientID, "https://as.example.com")
		if err != nil {
			t.Fatalf("Assertion at %v: %v", tt.at, err)
		}
		h, claims := verifyJWS(t, a, &tt.key.PublicKey)
		if h.KeyID() != tt.wantKID {
			t.Errorf("at %v: got kid %q; want %q", tt.at, h.KeyID(), tt.wantKID)
		}
		if claims["iat"] != float64(tt.at.Unix()) || claims["exp"] != float64(tt.at.Unix()+60) {
			t.Errorf("at %v: got iat %v exp %v; want %d and +60", tt.at, claims["iat"], claims["exp"], tt.at.Unix())
		}
	}
	if _, err := s.Assertion(now.Add(-72*time.Hour), rand.Reader, "", testClientID, "x"); !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("before any NotBefore: got %v; want ErrNoSigningKey", err)
	}
	// A grant's requests name the key that started it, current or not.
	a, err := s.Assertion(now, rand.Reader, "old", testClientID, "https://as.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := verifyJWS(t, a, &old.PublicKey); h.KeyID() != "old" {
		t.Errorf("named key: got kid %q, want old", h.KeyID())
	}
	if _, err := s.Assertion(now, rand.Reader, "gone", testClientID, "x"); !errors.Is(err, ErrUnknownSigningKey) {
		t.Errorf("a removed key: got %v, want ErrUnknownSigningKey", err)
	}
	if kid, err := s.CurrentKeyID(now); err != nil || kid != "cur" {
		t.Errorf("CurrentKeyID: got %q, %v; want cur", kid, err)
	}
}

func TestPublicJWKS(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	s := mustSigner(t,
		SigningKey{ID: "a", Key: a},
		SigningKey{ID: "b", Key: b, NotBefore: time.Now().Add(time.Hour)},
	)
	raw, err := s.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("got %d keys; want 2 (future keys are published)", len(doc.Keys))
	}
	for i, k := range []*ecdsa.PrivateKey{a, b} {
		got := doc.Keys[i]
		pub, _ := k.PublicKey.Bytes()
		want := map[string]string{
			"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
			"kid": []string{"a", "b"}[i],
			"x":   base64.RawURLEncoding.EncodeToString(pub[1:33]),
			"y":   base64.RawURLEncoding.EncodeToString(pub[33:]),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("key %d mismatch (-want +got):\n%s", i, diff)
		}
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		t.Fatalf("jwk.Parse: %v", err)
	}
	if set.Len() != 2 {
		t.Errorf("jwk.Parse: got %d keys; want 2", set.Len())
	}
}

// TestCanonicalCoordinates checks that JWK coordinates are always 32 bytes,
// including for the roughly 1 in 128 keys with a leading zero byte in x or y
// that big.Int.Bytes would shorten.
func TestCanonicalCoordinates(t *testing.T) {
	const n = 2000
	leadingZero := 0
	for range n {
		k := mustKey(t)
		pub, _ := k.PublicKey.Bytes()
		if pub[1] == 0 || pub[33] == 0 {
			leadingZero++
		}
		j, err := publicJWK(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		var coords struct{ X, Y string }
		if err := json.Unmarshal(b, &coords); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]string{"x": coords.X, "y": coords.Y} {
			d, err := base64.RawURLEncoding.DecodeString(c)
			if err != nil || len(d) != 32 {
				t.Fatalf("%s = %q decodes to %d bytes (%v); want 32", name, c, len(d), err)
			}
		}
		if want := base64.RawURLEncoding.EncodeToString(pub[1:33]); coords.X != want {
			t.Fatalf("x: got %q; want %q", coords.X, want)
		}
	}
	// Expected about 15; zero would mean the edge case was never exercised.
	if leadingZero == 0 {
		t.Errorf("no key with a leading zero coordinate among %d; the test exercised nothing", n)
	}
}

func TestDPoPKeyRoundTrip(t *testing.T) {
	k := mustKey(t)
	b, err := MarshalDPoPKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 32 {
		t.Errorf("got %d bytes; want 32", len(b))
	}
	got, err := ParseDPoPKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Error("parsed key differs from the original")
	}
	if _, err := ParseDPoPKey(b[:31]); err == nil {
		t.Error("ParseDPoPKey(short): got nil error; want an error")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := MarshalDPoPKey(p384); err == nil {
		t.Error("MarshalDPoPKey(P-384): got nil error; want an error")
	}
}

func TestDPoPProof(t *testing.T) {
	clock := newFakeClock()
	c := &Client{Now: clock.Now} // DPoPProof needs no HTTP
	k := mustKey(t)
	proof, err := c.DPoPProof(k, "GET", "https://pds.example.com/xrpc/com.atproto.server.getSession?x=1#frag", "n-1", "at-1")
	if err != nil {
		t.Fatal(err)
	}
	claims := verifyDPoP(t, proof, k)
	sum := sha256.Sum256([]byte("at-1"))
	want := map[string]any{
		"htm":   "GET",
		"htu":   "https://pds.example.com/xrpc/com.atproto.server.getSession",
		"iat":   float64(clock.Now().Unix()),
		"nonce": "n-1",
		"ath":   base64.RawURLEncoding.EncodeToString(sum[:]),
	}
	jti, _ := claims["jti"].(string)
	delete(claims, "jti")
	if diff := cmp.Diff(want, claims); diff != "" {
		t.Errorf("claims mismatch (-want +got):\n%s", diff)
	}
	proof2, err := c.DPoPProof(k, "GET", "https://pds.example.com/", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if jti2, _ := proofClaims(t, proof2)["jti"].(string); jti == "" || jti == jti2 {
		t.Errorf("jti: got %q then %q; want distinct random values", jti, jti2)
	}
	if _, err := c.DPoPProof(k, "GET", "/relative", "", ""); err == nil {
		t.Error("relative URL: got nil error; want an error")
	}
}

func TestNonceCache(t *testing.T) {
	var c NonceCache
	if got := c.Get("https://a:443"); got != "" {
		t.Errorf("empty cache: got %q", got)
	}
	c.Set("https://a:443", "n1")
	c.Set("https://a:443", "")
	if got := c.Get("https://a:443"); got != "n1" {
		t.Errorf("got %q; want n1 (empty nonces are ignored)", got)
	}
	for i := range maxNonceOrigins + 10 {
		c.Set(string(rune(i))+"o", "n")
	}
	if len(c.nonces) > maxNonceOrigins {
		t.Errorf("cache holds %d origins; want at most %d", len(c.nonces), maxNonceOrigins)
	}

	tests := map[string]string{
		"https://PDS.Example.com/xrpc/x?y": "https://pds.example.com:443",
		"http://localhost:2583/oauth/par":  "http://localhost:2583",
		"http://localhost/":                "http://localhost:80",
		"https://[::1]:8443/":              "https://[::1]:8443",
	}
	for in, want := range tests {
		if got, err := Origin(in); err != nil || got != want {
			t.Errorf("Origin(%q): got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://x", "/path", "https://"} {
		if got, err := Origin(in); err == nil {
			t.Errorf("Origin(%q): got %q; want an error", in, got)
		}
	}
}
