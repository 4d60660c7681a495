package oauthclient

import (
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const (
	testClientID    = "https://app.example.org/oauth-client-metadata.json"
	testRedirectURI = "https://app.example.org/auth/callback"
	testDID         = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	testRequestURI  = "urn:ietf:params:oauth:request_uri:req-abc"
	testVerifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recordedRequest is what fakeServer saw of one request.
type recordedRequest struct {
	method string
	path   string
	form   url.Values
	header http.Header
}

// fakeServer is a minimal authorization server and PDS on one origin. Tests
// replace handlers by path; every request is counted and recorded.
type fakeServer struct {
	srv    *httptest.Server
	issuer string

	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	requests []recordedRequest
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{handlers: make(map[string]http.HandlerFunc)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.issuer = f.srv.URL
	f.handle("/.well-known/oauth-authorization-server", jsonHandler(http.StatusOK, validMetadata(f.issuer)))
	f.handle("/.well-known/oauth-protected-resource", jsonHandler(http.StatusOK, map[string]any{
		"resource":              f.issuer,
		"authorization_servers": []string{f.issuer},
	}))
	f.handle("/oauth/par", jsonHandler(http.StatusCreated, map[string]any{
		"request_uri": testRequestURI,
		"expires_in":  299,
	}))
	f.handle("/oauth/token", jsonHandler(http.StatusOK, validTokenResponse()))
	f.handle("/oauth/revoke", func(w http.ResponseWriter, r *http.Request) {})
	return f
}

func (f *fakeServer) handle(path string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[path] = h
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	f.mu.Lock()
	f.requests = append(f.requests, recordedRequest{
		method: r.Method,
		path:   r.URL.Path,
		form:   r.PostForm,
		header: r.Header.Clone(),
	})
	h := f.handlers[r.URL.Path]
	f.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h(w, r)
}

// hits returns how many requests reached path.
func (f *fakeServer) hits(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if r.path == path {
			n++
		}
	}
	return n
}

// requestsTo returns the recorded requests to path, oldest first.
func (f *fakeServer) requestsTo(path string) []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recordedRequest
	for _, r := range f.requests {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

func jsonHandler(status int, v any) http.HandlerFunc {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(b)
	}
}

// validMetadata is authorization server metadata that passes validation for
// both public and confidential clients.
func validMetadata(issuer string) map[string]any {
	return map[string]any{
		"issuer":                                           issuer,
		"authorization_endpoint":                           issuer + "/oauth/authorize",
		"token_endpoint":                                   issuer + "/oauth/token",
		"pushed_authorization_request_endpoint":            issuer + "/oauth/par",
		"revocation_endpoint":                              issuer + "/oauth/revoke",
		"require_pushed_authorization_requests":            true,
		"response_types_supported":                         []string{"code"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"none", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                                 []string{"atproto", "transition:generic"},
		"prompt_values_supported":                          []string{"none", "login", "consent", "select_account", "create"},
		"dpop_signing_alg_values_supported":                []string{"RS256", "ES256"},
		"authorization_response_iss_parameter_supported":   true,
		"client_id_metadata_document_supported":            true,
	}
}

func validTokenResponse() map[string]any {
	return map[string]any{
		"access_token":  "at-1",
		"token_type":    "DPoP",
		"refresh_token": "ref-1",
		"scope":         "atproto transition:generic",
		"sub":           testDID,
		"expires_in":    3599,
	}
}

type clientOption func(*Client)

func withSigner(s *KeySigner) clientOption { return func(c *Client) { c.Signer = s } }

func newTestClient(t *testing.T, f *fakeServer, clock *fakeClock, opts ...clientOption) *Client {
	t.Helper()
	cfg := Client{
		HTTP:        f.srv.Client(),
		ClientID:    testClientID,
		RedirectURI: testRedirectURI,
		Insecure:    true,
		Now:         clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := NewDPoPKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSigner(t testing.TB, keys ...SigningKey) *KeySigner {
	t.Helper()
	s, err := NewKeySigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifyJWS checks tok's signature with pub and returns its protected
// header and claims.
func verifyJWS(t *testing.T, tok string, pub any) (jws.Headers, map[string]any) {
	t.Helper()
	payload, err := jws.Verify([]byte(tok), jws.WithKey(jwa.ES256, pub))
	if err != nil {
		t.Fatalf("verifying %q: %v", tok, err)
	}
	msg, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return msg.Signatures()[0].ProtectedHeaders(), claims
}

// verifyDPoP checks a DPoP proof against the jwk in its own header, that
// the jwk is the public part of key, and returns its claims.
func verifyDPoP(t *testing.T, proof string, key *ecdsa.PrivateKey) map[string]any {
	t.Helper()
	msg, err := jws.Parse([]byte(proof))
	if err != nil {
		t.Fatalf("parsing DPoP proof: %v", err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if got := h.Type(); got != "dpop+jwt" {
		t.Errorf("DPoP typ: got %q; want dpop+jwt", got)
	}
	if got := h.Algorithm(); got != jwa.ES256 {
		t.Errorf("DPoP alg: got %q; want ES256", got)
	}
	hk := h.JWK()
	if hk == nil {
		t.Fatal("DPoP header has no jwk")
	}
	if priv, err := jwk.IsPrivateKey(hk); err != nil || priv {
		t.Errorf("DPoP header jwk: private %v, error %v; want a public key", priv, err)
	}
	var raw ecdsa.PublicKey
	if err := hk.Raw(&raw); err != nil {
		t.Fatal(err)
	}
	if !raw.Equal(&key.PublicKey) {
		t.Error("DPoP header jwk is not the grant's key")
	}
	_, claims := verifyJWS(t, proof, hk)
	return claims
}

// proofClaims returns the claims of a DPoP proof without verifying it. It is
// safe to call from handlers.
func proofClaims(t *testing.T, proof string) map[string]any {
	msg, err := jws.Parse([]byte(proof))
	if err != nil {
		t.Errorf("parsing DPoP proof %q: %v", proof, err)
		return nil
	}
	var claims map[string]any
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		t.Errorf("DPoP payload: %v", err)
	}
	return claims
}
