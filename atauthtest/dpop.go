package atauthtest

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// nonceState is the DPoP nonce of one server. A nonce is valid while it is
// the current one or the one before it, so a client's cached nonce survives
// one rotation. Fields are guarded by Network.mu.
type nonceState struct {
	cur, prev string
	rotated   time.Time
	force     bool
}

// current returns the nonce to hand out, rotating it when it is due. The
// caller holds n.mu.
func (s *nonceState) current(n *Network) string {
	now := n.cfg.now()
	if s.cur == "" || now.Sub(s.rotated) >= n.cfg.nonceRotation || now.Before(s.rotated) {
		s.prev = s.cur
		s.cur = n.randomString(16)
		s.rotated = now
	}
	return s.cur
}

// valid reports whether nonce is current. The caller holds n.mu.
func (s *nonceState) valid(n *Network, nonce string) bool {
	s.current(n)
	return nonce != "" && (nonce == s.cur || nonce == s.prev)
}

// renew replaces the nonce and invalidates every earlier one. The caller
// holds n.mu.
func (s *nonceState) renew(n *Network) string {
	s.prev = ""
	s.cur = n.randomString(16)
	s.rotated = n.cfg.now()
	return s.cur
}

// dpopError is a rejected DPoP proof. useNonce means the client should
// retry with the nonce in the DPoP-Nonce header.
type dpopError struct {
	useNonce bool
	desc     string
}

func (e *dpopError) Error() string { return "atauthtest: dpop: " + e.desc }

func (e *dpopError) code() string {
	if e.useNonce {
		return "use_dpop_nonce"
	}
	return "invalid_dpop_proof"
}

// dpopProof is what a verified proof binds: the key thumbprint.
type dpopProof struct {
	jkt string
}

type dpopClaims struct {
	JTI   string   `json:"jti"`
	HTM   string   `json:"htm"`
	HTU   string   `json:"htu"`
	IAT   *float64 `json:"iat"`
	Nonce *string  `json:"nonce"`
	ATH   *string  `json:"ath"`
}

// checkDPoP verifies the DPoP proof of r, as RFC 9449 §4.3 and the reference
// AS do. base is the origin of the server (its htu prefix). accessToken is
// the token the proof must hash in ath, or "" when ath must be absent. The
// nonce is required. A missing proof is reported with present == false and
// a nil error so callers can decide whether it is optional.
func (n *Network) checkDPoP(r *http.Request, base string, nonces *nonceState, replayNS, accessToken string) (proof dpopProof, present bool, err error) {
	values := r.Header.Values("DPoP")
	if len(values) == 0 {
		return dpopProof{}, false, nil
	}
	if len(values) > 1 || values[0] == "" {
		return dpopProof{}, true, &dpopError{desc: "the DPoP header must carry exactly one proof"}
	}
	raw := []byte(values[0])

	msg, err := jws.Parse(raw)
	if err != nil {
		return dpopProof{}, true, &dpopError{desc: "the DPoP proof is not a compact JWS"}
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return dpopProof{}, true, &dpopError{desc: "the DPoP proof must have one signature"}
	}
	h := sigs[0].ProtectedHeaders()
	if h.Type() != "dpop+jwt" {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof "typ" must be "dpop+jwt"`}
	}
	if h.Algorithm() != jwa.ES256 {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof "alg" must be ES256`}
	}
	key := h.JWK()
	if key == nil {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof has no "jwk" header`}
	}
	if _, private := key.(jwk.ECDSAPrivateKey); private {
		return dpopProof{}, true, &dpopError{desc: `the DPoP "jwk" header must not contain a private key`}
	}
	ecKey, ok := key.(jwk.ECDSAPublicKey)
	if !ok || ecKey.Crv() != jwa.P256 {
		return dpopProof{}, true, &dpopError{desc: `the DPoP "jwk" must be a P-256 public key`}
	}
	payload, err := jws.Verify(raw, jws.WithKey(jwa.ES256, key))
	if err != nil {
		return dpopProof{}, true, &dpopError{desc: "the DPoP proof signature is invalid"}
	}
	var c dpopClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return dpopProof{}, true, &dpopError{desc: "the DPoP proof claims are not a JSON object"}
	}

	now := n.cfg.now()
	if c.IAT == nil {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof has no "iat"`}
	}
	iat := time.Unix(int64(*c.IAT), 0)
	// The reference accepts proofs at most 10 s old, with the nonce
	// lifetime as clock tolerance either way.
	if iat.After(now.Add(dpopClockTolerance)) {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof "iat" is in the future`}
	}
	if iat.Before(now.Add(-dpopMaxAge - dpopClockTolerance)) {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof is too old`}
	}
	if c.JTI == "" {
		return dpopProof{}, true, &dpopError{desc: `the DPoP proof has no "jti"`}
	}
	if c.HTM != r.Method {
		return dpopProof{}, true, &dpopError{desc: `DPoP "htm" mismatch`}
	}
	htu, err := normalizeHTU(c.HTU)
	if err != nil {
		return dpopProof{}, true, &dpopError{desc: `DPoP "htu" is not a valid http(s) URL`}
	}
	if htu != base+r.URL.EscapedPath() {
		return dpopProof{}, true, &dpopError{desc: `DPoP "htu" mismatch`}
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(b64(sum[:]))) != 1 {
			return dpopProof{}, true, &dpopError{desc: `DPoP "ath" mismatch`}
		}
	} else if c.ATH != nil {
		return dpopProof{}, true, &dpopError{desc: `DPoP "ath" claim not allowed`}
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return dpopProof{}, true, &dpopError{desc: "cannot compute the DPoP key thumbprint"}
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if nonces.force {
		nonces.force = false
		nonces.renew(n)
		return dpopProof{}, true, &dpopError{useNonce: true, desc: "a fresh DPoP nonce is required"}
	}
	if c.Nonce == nil || *c.Nonce == "" {
		return dpopProof{}, true, &dpopError{useNonce: true, desc: "Authorization server requires nonce in DPoP proof"}
	}
	if !nonces.valid(n, *c.Nonce) {
		return dpopProof{}, true, &dpopError{useNonce: true, desc: `DPoP "nonce" mismatch`}
	}
	if !n.rememberJTI(replayNS+c.JTI, now.Add(dpopMaxAge+2*dpopClockTolerance)) {
		return dpopProof{}, true, &dpopError{desc: "DPoP proof replayed"}
	}
	return dpopProof{jkt: b64(tp)}, true, nil
}

// rememberJTI records a one-time identifier until expiry and reports whether
// it was new. The caller holds n.mu.
func (n *Network) rememberJTI(id string, expiry time.Time) bool {
	now := n.cfg.now()
	if exp, seen := n.seenJTI[id]; seen && now.Before(exp) {
		return false
	}
	if len(n.seenJTI) > 4096 {
		for k, exp := range n.seenJTI {
			if !now.Before(exp) {
				delete(n.seenJTI, k)
			}
		}
	}
	n.seenJTI[id] = expiry
	return true
}

// normalizeHTU drops the query and fragment of an htu claim, which the
// reference tolerates for old clients.
func normalizeHTU(htu string) (string, error) {
	u, err := url.Parse(htu)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", errors.New("atauthtest: htu must be an absolute http(s) URL without credentials")
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + path, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// writeDPoPChallenge answers a rejected proof at the AS: 400 with the error
// in the body, as the reference does for token endpoints.
func (n *Network) writeASDPoPError(w http.ResponseWriter, nonces *nonceState, e *dpopError) {
	if e.useNonce {
		n.mu.Lock()
		w.Header().Set("DPoP-Nonce", nonces.current(n))
		n.mu.Unlock()
	}
	writeOAuthError(w, http.StatusBadRequest, e.code(), e.desc)
}

// writeOAuthError writes an RFC 6749 error body.
func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("atauthtest: encoding JSON: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
