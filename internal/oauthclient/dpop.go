package oauthclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// NewDPoPKey generates a P-256 key for DPoP proofs. Since Go 1.26 the
// standard library ignores rand when generating keys (see
// testing/cryptotest.SetGlobalRandom); the parameter stays so that callers
// pass their Client.Rand and the signature survives a change of mind.
func NewDPoPKey(rand io.Reader) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: generating DPoP key: %w", err)
	}
	return k, nil
}

// MarshalDPoPKey encodes a P-256 DPoP key as its 32-byte raw scalar (SEC 1
// §2.3.6), for sealing into a record. ParseDPoPKey reverses it.
func MarshalDPoPKey(k *ecdsa.PrivateKey) ([]byte, error) {
	if k == nil || k.Curve != elliptic.P256() {
		return nil, errors.New("atauth: oauth: DPoP key is not a P-256 private key")
	}
	b, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: encoding DPoP key: %w", err)
	}
	return b, nil
}

// ParseDPoPKey decodes a key encoded by MarshalDPoPKey.
func ParseDPoPKey(b []byte) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: decoding DPoP key: %w", err)
	}
	return k, nil
}

// dpopClaims is the payload of a DPoP proof (RFC 9449 §4.2).
type dpopClaims struct {
	JTI      string `json:"jti"`
	Method   string `json:"htm"`
	URL      string `json:"htu"`
	IssuedAt int64  `json:"iat"`
	Nonce    string `json:"nonce,omitempty"`
	ATH      string `json:"ath,omitempty"`
}

// DPoPProof returns a DPoP proof JWT (RFC 9449) for a request with method to
// targetURL, signed by key. The header has typ dpop+jwt, alg ES256 and the
// public jwk; the claims are a random jti, htm, htu (targetURL without query
// and fragment), iat from c.Now, nonce when not empty, and, when accessToken
// is not empty, ath = base64url(SHA-256(accessToken)) for resource requests.
func (c *Client) DPoPProof(key *ecdsa.PrivateKey, method, targetURL, nonce, accessToken string) (string, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return "", errors.New("atauth: oauth: DPoP key is not a P-256 private key")
	}
	u, err := url.Parse(targetURL)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", fmt.Errorf("atauth: oauth: DPoP target %q is not an absolute URL", targetURL)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	jti, err := randomString(c.rand(), 16)
	if err != nil {
		return "", err
	}
	claims := dpopClaims{
		JTI:      jti,
		Method:   method,
		URL:      u.String(),
		IssuedAt: c.now().Unix(),
		Nonce:    nonce,
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("atauth: oauth: encoding DPoP proof: %w", err)
	}
	pub, err := publicJWK(&key.PublicKey)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, "dpop+jwt"); err != nil {
		return "", fmt.Errorf("atauth: oauth: signing DPoP proof: %w", err)
	}
	if err := h.Set(jws.JWKKey, pub); err != nil {
		return "", fmt.Errorf("atauth: oauth: signing DPoP proof: %w", err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("atauth: oauth: signing DPoP proof: %w", err)
	}
	return string(signed), nil
}

// randomString returns n random bytes from r, base64url-encoded without
// padding.
func randomString(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("atauth: oauth: reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
