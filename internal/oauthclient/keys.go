package oauthclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// assertionLifetime is the exp-iat span of a client assertion. The reference
// authorization server refuses assertions older than one minute.
const assertionLifetime = 60 * time.Second

// ClientAssertionType is the client_assertion_type sent with private_key_jwt
// client authentication (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ErrNoSigningKey is returned by KeySigner.Assertion when no key has a
// NotBefore at or before the signing time.
var ErrNoSigningKey = errors.New("atauth: oauth: no client signing key is valid yet")

// SigningKey is one ES256 key of a confidential client's keyring.
type SigningKey struct {
	// ID is the key's kid in the published JWKS and in assertion headers.
	ID string
	// Key is a P-256 private key.
	Key *ecdsa.PrivateKey
	// NotBefore is when the key starts to sign. A key whose NotBefore is in
	// the future is already published, so that authorization servers which
	// cache the client's JWKS know it before the first assertion uses it.
	NotBefore time.Time
}

// KeySigner signs client assertions (private_key_jwt, RFC 7523) with the
// newest usable key of an ES256 keyring and publishes the whole keyring as a
// JWKS. It is immutable and safe for concurrent use.
type KeySigner struct {
	keys []SigningKey
}

// NewKeySigner returns a KeySigner for keys. It rejects an empty keyring,
// keys that are not P-256, and empty or duplicate IDs.
func NewKeySigner(keys []SigningKey) (*KeySigner, error) {
	if len(keys) == 0 {
		return nil, errors.New("atauth: oauth: keyring has no keys")
	}
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if k.ID == "" {
			return nil, fmt.Errorf("atauth: oauth: key %d has an empty ID", i)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("atauth: oauth: duplicate key ID %q", k.ID)
		}
		seen[k.ID] = true
		if k.Key == nil || k.Key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("atauth: oauth: key %q is not a P-256 private key", k.ID)
		}
	}
	return &KeySigner{keys: append([]SigningKey(nil), keys...)}, nil
}

// PublicJWKS returns the JSON Web Key Set {"keys":[...]} of every key in the
// keyring, including keys that do not sign yet, for the client's jwks_uri or
// inline jwks metadata.
func (s *KeySigner) PublicJWKS() ([]byte, error) {
	set := jwk.NewSet()
	for _, k := range s.keys {
		pub, err := publicJWK(&k.Key.PublicKey)
		if err != nil {
			return nil, err
		}
		for name, v := range map[string]any{
			jwk.KeyIDKey:     k.ID,
			jwk.AlgorithmKey: jwa.ES256,
			jwk.KeyUsageKey:  jwk.ForSignature,
		} {
			if err := pub.Set(name, v); err != nil {
				return nil, fmt.Errorf("atauth: oauth: building JWKS: %w", err)
			}
		}
		if err := set.AddKey(pub); err != nil {
			return nil, fmt.Errorf("atauth: oauth: building JWKS: %w", err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: encoding JWKS: %w", err)
	}
	return b, nil
}

// current returns the key with the latest NotBefore at or before now; among
// equal NotBefore values the first in the keyring wins.
func (s *KeySigner) current(now time.Time) (SigningKey, bool) {
	var best SigningKey
	found := false
	for _, k := range s.keys {
		if k.NotBefore.After(now) {
			continue
		}
		if !found || k.NotBefore.After(best.NotBefore) {
			best, found = k, true
		}
	}
	return best, found
}

// assertionClaims is the payload of a client assertion (RFC 7523 §3).
type assertionClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	JTI      string `json:"jti"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// ErrUnknownSigningKey is returned when a grant names a client key the
// keyring no longer holds. The reference authorization server binds a grant
// to the key that started it, so such a grant can no longer be refreshed.
var ErrUnknownSigningKey = errors.New("atauth: oauth: the client key that created the grant is no longer configured")

// CurrentKeyID returns the kid of the key that signs new grants now: the
// newest whose NotBefore is at or before now.
func (s *KeySigner) CurrentKeyID(now time.Time) (string, error) {
	k, ok := s.current(now)
	if !ok {
		return "", ErrNoSigningKey
	}
	return k.ID, nil
}

// Assertion returns a signed client assertion JWT: iss and sub are clientID,
// aud is audience (the authorization server's issuer), with a random jti,
// iat = now and exp = now + 60s. The header carries alg ES256, typ JWT and
// kid. An empty kid means the newest key whose NotBefore is at or before
// now; a grant's requests name the key that started the grant, because the
// reference authorization server refuses any other.
func (s *KeySigner) Assertion(now time.Time, rand io.Reader, kid, clientID, audience string) (string, error) {
	var k SigningKey
	if kid == "" {
		var ok bool
		if k, ok = s.current(now); !ok {
			return "", ErrNoSigningKey
		}
	} else {
		found := false
		for _, key := range s.keys {
			if key.ID == kid {
				k, found = key, true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("%w: kid %q", ErrUnknownSigningKey, kid)
		}
	}
	jti, err := randomString(rand, 16)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(assertionClaims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: audience,
		JTI:      jti,
		IssuedAt: now.Unix(),
		Expiry:   now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("atauth: oauth: encoding client assertion: %w", err)
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, "JWT"); err != nil {
		return "", fmt.Errorf("atauth: oauth: signing client assertion: %w", err)
	}
	if err := h.Set(jws.KeyIDKey, k.ID); err != nil {
		return "", fmt.Errorf("atauth: oauth: signing client assertion: %w", err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256, k.Key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("atauth: oauth: signing client assertion: %w", err)
	}
	return string(signed), nil
}

// publicJWK converts a P-256 public key to a JWK. jwx encodes both coordinates
// as fixed 32-byte values (RFC 7518 §6.2.1.2), unlike big.Int.Bytes, which
// drops leading zeros for about 1 key in 128; TestCanonicalCoordinates checks
// this.
func publicJWK(pub *ecdsa.PublicKey) (jwk.Key, error) {
	if pub.Curve != elliptic.P256() {
		return nil, errors.New("atauth: oauth: key is not P-256")
	}
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: encoding public key: %w", err)
	}
	return k, nil
}
