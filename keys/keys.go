// Package keys creates, encodes and loads the keys an atauth.Config needs:
// the ES256 keys a confidential client signs with (Config.ClientKeys) and
// the keyring that encrypts secrets at rest (Config.SealingKeys).
//
// The command github.com/atauth/atauth/cmd/atauth writes these files; this
// package reads them.
//
// # Client keys
//
// A client key is stored as a private JWK (RFC 7517), one key per file:
//
//	{"kty":"EC","crv":"P-256","kid":"20260612-3f9a0c1e","alg":"ES256","use":"sig","x":"…","y":"…","d":"…"}
//
// x, y and d are 32 bytes each, base64url without padding (RFC 7518
// §6.2). kid is required. An optional "nbf" member, atauth's own, holds the
// key's NotBefore in seconds since the Unix epoch: a key added for rotation
// is published at once but signs only from then on, so that authorization
// servers that cache the client's JWKS know it before it signs.
//
// # Keyrings
//
// A keyring is text: one key per line, ID:SECRET, where ID is 1 to 16
// visible ASCII characters and SECRET is 32 bytes in base64url (standard
// base64, padded or not, is accepted too, so the output of
// `openssl rand -base64 32` works). The first key seals; every key opens.
// To rotate, add a new key in front of the old ones; remove an old key only
// once nothing it sealed is still alive (the longest session lifetime).
// Entries may also be separated by spaces, so a keyring fits in one
// environment variable.
//
// # Loading
//
//	ck, err := keys.LoadClientKey("/etc/app/client-key.json")
//	if err != nil {
//		log.Fatal(err)
//	}
//	ring, err := keys.LoadKeyring("/etc/app/keyring")
//	// or: ring, err := keys.ParseKeyring([]byte(os.Getenv("ATAUTH_KEYRING")))
//	if err != nil {
//		log.Fatal(err)
//	}
//	m, err := atauth.New(atauth.Config{
//		ClientID:    "https://app.example.com/oauth-client-metadata.json",
//		RedirectURL: "https://app.example.com/auth/callback",
//		ClientKeys:  []atauth.ClientKey{ck},
//		SealingKeys: ring,
//		Store:       store,
//	})
package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/atauth/atauth"
)

// ErrInvalidKey reports a key, keyring or key file that is malformed or
// breaks a rule atauth.New enforces.
var ErrInvalidKey = errors.New("atauth: keys: invalid key")

// coordSize is the length of a P-256 coordinate and private scalar.
const coordSize = 32

// jwkMembers is a P-256 JWK as this package writes it. Field order is the
// output order.
type jwkMembers struct {
	Kty       string `json:"kty"`
	Crv       string `json:"crv"`
	Kid       string `json:"kid"`
	Alg       string `json:"alg"`
	Use       string `json:"use"`
	X         string `json:"x"`
	Y         string `json:"y"`
	D         string `json:"d,omitempty"`
	NotBefore int64  `json:"nbf,omitempty"`
}

// NewClientKey returns a new P-256 client key with the given kid and a zero
// NotBefore (it signs at once).
//
// It takes no source of randomness: since Go 1.26 ecdsa.GenerateKey always
// uses a secure source and ignores the one it is given. Tests that need
// fixed keys use testing/cryptotest.SetGlobalRandom.
func NewClientKey(kid string) (atauth.ClientKey, error) {
	if kid == "" {
		return atauth.ClientKey{}, invalid("", "kid is empty")
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return atauth.ClientKey{}, fmt.Errorf("atauth: keys: generating client key: %w", err)
	}
	return atauth.ClientKey{ID: kid, Key: k}, nil
}

// MarshalClientKeyJWK encodes k as a private JWK, including its NotBefore
// (in whole seconds) when it is not zero. The result holds the private key:
// store it like a password.
func MarshalClientKeyJWK(k atauth.ClientKey) ([]byte, error) {
	m, err := publicMembers(k)
	if err != nil {
		return nil, err
	}
	d, err := k.Key.Bytes()
	if err != nil {
		return nil, invalid("", "client key %q: %v", k.ID, err)
	}
	m.D = base64.RawURLEncoding.EncodeToString(d)
	if !k.NotBefore.IsZero() {
		m.NotBefore = k.NotBefore.Unix()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("atauth: keys: encoding client key %q: %w", k.ID, err)
	}
	return b, nil
}

// MarshalPublicJWKS encodes the public halves of ks as a JWK Set, the
// document a confidential client publishes at its jwks_uri
// (/.well-known/jwks.json). It includes keys whose NotBefore is still to
// come, as the Manager's JWKS does.
func MarshalPublicJWKS(ks []atauth.ClientKey) ([]byte, error) {
	set := struct {
		Keys []jwkMembers `json:"keys"`
	}{Keys: make([]jwkMembers, 0, len(ks))}
	seen := make(map[string]bool, len(ks))
	for _, k := range ks {
		m, err := publicMembers(k)
		if err != nil {
			return nil, err
		}
		if seen[k.ID] {
			return nil, invalid("", "duplicate client key id %q", k.ID)
		}
		seen[k.ID] = true
		set.Keys = append(set.Keys, m)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("atauth: keys: encoding JWKS: %w", err)
	}
	return b, nil
}

// publicMembers returns k's JWK members without d and nbf, after checking k
// is a P-256 key with a kid.
func publicMembers(k atauth.ClientKey) (jwkMembers, error) {
	if k.ID == "" {
		return jwkMembers{}, invalid("", "client key has no id")
	}
	x, y, err := coordinates(k.Key)
	if err != nil {
		return jwkMembers{}, invalid("", "client key %q: %v", k.ID, err)
	}
	return jwkMembers{Kty: "EC", Crv: "P-256", Kid: k.ID, Alg: "ES256", Use: "sig", X: x, Y: y}, nil
}

// coordinates returns the base64url x and y of a P-256 key's public point.
func coordinates(k *ecdsa.PrivateKey) (x, y string, err error) {
	if k == nil || k.Curve != elliptic.P256() {
		return "", "", errors.New("not a P-256 private key")
	}
	// PublicKey.Bytes is the uncompressed point 0x04 || x || y with both
	// coordinates at their full 32 bytes, as RFC 7518 §6.2.1.2 requires
	// (big.Int.Bytes would drop leading zeros for about 1 key in 128).
	p, err := k.PublicKey.Bytes()
	if err != nil {
		return "", "", err
	}
	return base64.RawURLEncoding.EncodeToString(p[1 : 1+coordSize]),
		base64.RawURLEncoding.EncodeToString(p[1+coordSize:]), nil
}

// invalid returns an error wrapping ErrInvalidKey. where, when not empty,
// names the file the key came from.
func invalid(where, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if where != "" {
		msg = where + ": " + msg
	}
	return fmt.Errorf("%w: %s", ErrInvalidKey, msg)
}

// ParseClientKeyJWK decodes a private P-256 JWK, as MarshalClientKeyJWK
// writes it. It requires kty EC, crv P-256, a kid, and x, y and d of 32 bytes
// each that belong together; alg and use, when present, must be ES256 and
// sig. Members it does not know are ignored.
func ParseClientKeyJWK(b []byte) (atauth.ClientKey, error) {
	return parseClientKeyJWK(b, "")
}

func parseClientKeyJWK(b []byte, where string) (atauth.ClientKey, error) {
	// Member names are case-sensitive (RFC 7517 §4), which decoding into a
	// struct would not respect.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return atauth.ClientKey{}, invalid(where, "client key is not a JSON object: %v", err)
	}
	var m jwkMembers
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"kty", &m.Kty}, {"crv", &m.Crv}, {"kid", &m.Kid}, {"alg", &m.Alg},
		{"use", &m.Use}, {"x", &m.X}, {"y", &m.Y}, {"d", &m.D},
	} {
		v, ok := raw[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return atauth.ClientKey{}, invalid(where, "client key member %q is not a string", f.name)
		}
	}
	switch {
	case m.Kty != "EC" || m.Crv != "P-256":
		return atauth.ClientKey{}, invalid(where, "client key has kty %q and crv %q, want EC and P-256", m.Kty, m.Crv)
	case m.Kid == "":
		return atauth.ClientKey{}, invalid(where, "client key has no kid")
	case m.Alg != "" && m.Alg != "ES256":
		return atauth.ClientKey{}, invalid(where, "client key %q has alg %q, want ES256", m.Kid, m.Alg)
	case m.Use != "" && m.Use != "sig":
		return atauth.ClientKey{}, invalid(where, "client key %q has use %q, want sig", m.Kid, m.Use)
	case m.D == "":
		return atauth.ClientKey{}, invalid(where, "client key %q has no private part (d): it is a public key", m.Kid)
	}
	d, err := base64.RawURLEncoding.DecodeString(m.D)
	if err != nil || len(d) != coordSize {
		return atauth.ClientKey{}, invalid(where, "client key %q: d is not %d bytes of unpadded base64url", m.Kid, coordSize)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return atauth.ClientKey{}, invalid(where, "client key %q: d is not a valid P-256 private key", m.Kid)
	}
	x, y, err := coordinates(priv)
	if err != nil {
		return atauth.ClientKey{}, invalid(where, "client key %q: %v", m.Kid, err)
	}
	if m.X != x || m.Y != y {
		return atauth.ClientKey{}, invalid(where, "client key %q: x and y are not the public key of d", m.Kid)
	}
	k := atauth.ClientKey{ID: m.Kid, Key: priv}
	if v, ok := raw["nbf"]; ok {
		var nbf int64
		if err := json.Unmarshal(v, &nbf); err != nil || nbf < 0 {
			return atauth.ClientKey{}, invalid(where, "client key %q: nbf is not a whole number of seconds since 1970", m.Kid)
		}
		k.NotBefore = time.Unix(nbf, 0).UTC()
	}
	return k, nil
}

// LoadClientKey reads a private JWK from the file at path, as
// ParseClientKeyJWK decodes it.
func LoadClientKey(path string) (atauth.ClientKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return atauth.ClientKey{}, fmt.Errorf("atauth: keys: %w", err)
	}
	return parseClientKeyJWK(b, path)
}

// LoadClientKeys loads one client key from each path, in order, and checks
// that their kids are unique.
func LoadClientKeys(paths ...string) ([]atauth.ClientKey, error) {
	ks := make([]atauth.ClientKey, 0, len(paths))
	seen := make(map[string]string, len(paths))
	for _, p := range paths {
		k, err := LoadClientKey(p)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[k.ID]; dup {
			return nil, invalid("", "%s and %s have the same kid %q", prev, p, k.ID)
		}
		seen[k.ID] = p
		ks = append(ks, k)
	}
	return ks, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint of k's public key: the
// SHA-256 of its required JWK members.
func Thumbprint(k *ecdsa.PrivateKey) ([]byte, error) {
	x, y, err := coordinates(k)
	if err != nil {
		return nil, invalid("", "%v", err)
	}
	// RFC 7638 §3.2: the required members in lexicographic order, without
	// whitespace. The values are base64url, so they need no escaping.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return sum[:], nil
}
