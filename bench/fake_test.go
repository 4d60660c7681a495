package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// The fake network's names. indigo's oauth package accepts only https URLs
// without a port on public-looking hosts, and atauthtest serves plain http
// on 127.0.0.1 ports and checks DPoP "htu" and the client assertion's "aud"
// against those http URLs, so indigo cannot run against atauthtest through
// a proxy: the proofs it signs name the https URLs. fakeNet serves these
// names instead, from one TLS server, and both clients reach it through
// fakeNet.Client, which dials every host to that server.
const (
	fakeAS     = "https://as.test"
	fakePDS    = "https://pds.test"
	fakePLC    = "https://plc.test"
	fakeHandle = "alice.test"
	fakeDID    = "did:plc:benchaliceaaaaaaaaaaaaaa"
)

// fakeNet is a minimal ATProto network (identity directory, handle
// well-known, PDS, authorization server) with the strictness that matters
// for the comparisons: PAR only, PKCE S256, DPoP with server nonces on the
// AS and the PDS (signature, htm, htu, jti replay, ath, key binding),
// single-use rotating refresh tokens whose reuse ends the whole grant, as
// in the reference @atproto/oauth-provider. It accepts public clients only
// and does not fetch client metadata; it is not a conformance test.
type fakeNet struct {
	srv    *httptest.Server
	Client *http.Client

	asNonce, pdsNonce string

	mu       sync.Mutex
	pars     map[string]fakePAR    // request_uri →
	codes    map[string]fakePAR    // code →
	refresh  map[string]*fakeGrant // refresh token (current or spent) →
	access   map[string]fakeAccess // access token →
	jtis     map[string]bool
	grants   []*fakeGrant
	requests map[string]int // host → requests

	refreshes atomic.Int64 // successful refresh_token grants
	replays   atomic.Int64 // refresh tokens presented a second time
}

type fakePAR struct {
	clientID, redirectURI, state, challenge, scope, jkt string
}

type fakeGrant struct {
	current string // the live refresh token
	jkt     string
	scope   string
	dead    bool
}

type fakeAccess struct {
	grant   *fakeGrant
	expired bool
}

// newFakeNet starts the network; it stops when tb ends.
func newFakeNet(tb testing.TB) *fakeNet {
	tb.Helper()
	f := &fakeNet{
		asNonce:  randText(),
		pdsNonce: randText(),
		pars:     map[string]fakePAR{},
		codes:    map[string]fakePAR{},
		refresh:  map[string]*fakeGrant{},
		access:   map[string]fakeAccess{},
		jtis:     map[string]bool{},
		requests: map[string]int{},
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	tb.Cleanup(f.srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	addr := f.srv.Listener.Addr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		// httptest's certificate names example.com; every fake host is
		// served with it.
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "example.com"},
		MaxIdleConnsPerHost: 64,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	f.Client = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	return f
}

// newClient returns a client with connections of its own, as a separate
// instance of an application would have.
func (f *fakeNet) newClient(tb testing.TB) *http.Client {
	tr := f.Client.Transport.(*http.Transport).Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: f.Client.Timeout}
}

// Requests returns how many requests each host has answered.
func (f *fakeNet) Requests() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]int, len(f.requests))
	for k, v := range f.requests {
		m[k] = v
	}
	return m
}

// TotalRequests returns how many requests the network has answered.
func (f *fakeNet) TotalRequests() int {
	n := 0
	for _, v := range f.Requests() {
		n += v
	}
	return n
}

// ExpireAccessTokens makes every access token issued so far answer 401
// invalid_token at the PDS. Grants stay alive.
func (f *fakeNet) ExpireAccessTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, a := range f.access {
		a.expired = true
		f.access[k] = a
	}
}

// LiveGrants returns how many grants are alive.
func (f *fakeNet) LiveGrants() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, g := range f.grants {
		if !g.dead {
			n++
		}
	}
	return n
}

// Approve consents to the authorization request in authURL, as
// atauthtest.Network.Approve does, and returns the callback URL.
func (f *fakeNet) Approve(authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pars[u.Query().Get("request_uri")]
	if !ok || p.clientID != u.Query().Get("client_id") {
		return "", fmt.Errorf("bench: unknown request_uri in %s", authURL)
	}
	delete(f.pars, u.Query().Get("request_uri"))
	code := randText()
	f.codes[code] = p
	q := url.Values{"code": {code}, "state": {p.state}, "iss": {fakeAS}}
	return p.redirectURI + "?" + q.Encode(), nil
}

func (f *fakeNet) serve(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	f.mu.Lock()
	f.requests[host]++
	f.mu.Unlock()
	switch {
	case host == "plc.test" && r.URL.Path == "/"+fakeDID:
		writeJSON(w, http.StatusOK, map[string]any{
			"@context":    []string{"https://www.w3.org/ns/did/v1"},
			"id":          fakeDID,
			"alsoKnownAs": []string{"at://" + fakeHandle},
			"service": []map[string]string{{
				"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": fakePDS,
			}},
		})
	case host == fakeHandle && r.URL.Path == "/.well-known/atproto-did":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, fakeDID)
	case host == "pds.test" && r.URL.Path == "/xrpc/com.atproto.identity.resolveHandle":
		if r.URL.Query().Get("handle") != fakeHandle {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "InvalidRequest", "message": "unknown handle"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"did": fakeDID})
	case host == "pds.test" && r.URL.Path == "/.well-known/oauth-protected-resource":
		writeJSON(w, http.StatusOK, map[string]any{"resource": fakePDS, "authorization_servers": []string{fakeAS}})
	case host == "pds.test" && r.URL.Path == "/xrpc/com.atproto.server.getSession":
		f.getSession(w, r)
	case host == "as.test" && r.URL.Path == "/.well-known/oauth-authorization-server":
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                           fakeAS,
			"authorization_endpoint":                           fakeAS + "/oauth/authorize",
			"token_endpoint":                                   fakeAS + "/oauth/token",
			"pushed_authorization_request_endpoint":            fakeAS + "/oauth/par",
			"revocation_endpoint":                              fakeAS + "/oauth/revoke",
			"require_pushed_authorization_requests":            true,
			"response_types_supported":                         []string{"code"},
			"grant_types_supported":                            []string{"authorization_code", "refresh_token"},
			"code_challenge_methods_supported":                 []string{"S256"},
			"token_endpoint_auth_methods_supported":            []string{"none", "private_key_jwt"},
			"dpop_signing_alg_values_supported":                []string{"ES256"},
			"scopes_supported":                                 []string{"atproto", "transition:generic"},
			"client_id_metadata_document_supported":            true,
			"protected_resources":                              []string{fakePDS},
			"prompt_values_supported":                          []string{"none", "login", "consent", "select_account", "create"},
			"token_endpoint_auth_signing_alg_values_supported": []string{"ES256"},
			"authorization_response_iss_parameter_supported":   true,
		})
	case host == "as.test" && r.URL.Path == "/oauth/par" && r.Method == http.MethodPost:
		f.par(w, r)
	case host == "as.test" && r.URL.Path == "/oauth/token" && r.Method == http.MethodPost:
		f.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeNet) par(w http.ResponseWriter, r *http.Request) {
	jkt, ok := f.checkProof(w, r, fakeAS, f.asNonce, "")
	if !ok {
		return
	}
	q := r.PostForm
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("client_id") == "" || q.Get("redirect_uri") == "" || q.Get("state") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "missing or bad PAR parameter")
		return
	}
	uri := "urn:ietf:params:oauth:request_uri:" + randText()
	f.mu.Lock()
	f.pars[uri] = fakePAR{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), state: q.Get("state"),
		challenge: q.Get("code_challenge"), scope: q.Get("scope"), jkt: jkt}
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": 300})
}

func (f *fakeNet) token(w http.ResponseWriter, r *http.Request) {
	jkt, ok := f.checkProof(w, r, fakeAS, f.asNonce, "")
	if !ok {
		return
	}
	q := r.PostForm
	f.mu.Lock()
	defer f.mu.Unlock()
	var g *fakeGrant
	switch q.Get("grant_type") {
	case "authorization_code":
		p, ok := f.codes[q.Get("code")]
		delete(f.codes, q.Get("code"))
		sum := sha256.Sum256([]byte(q.Get("code_verifier")))
		switch {
		case !ok:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown code")
			return
		case base64.RawURLEncoding.EncodeToString(sum[:]) != p.challenge:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "bad code_verifier")
			return
		case p.jkt != jkt || p.redirectURI != q.Get("redirect_uri") || p.clientID != q.Get("client_id"):
			oauthError(w, http.StatusBadRequest, "invalid_grant", "code bound to another key or client")
			return
		}
		g = &fakeGrant{jkt: jkt, scope: p.scope}
		f.grants = append(f.grants, g)
	case "refresh_token":
		rt := q.Get("refresh_token")
		g, ok = f.refresh[rt]
		switch {
		case !ok || g.dead:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token")
			return
		case rt != g.current:
			// Reuse of a spent refresh token ends the whole grant, as in
			// the reference AS.
			g.dead = true
			f.replays.Add(1)
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Refresh token replayed")
			return
		case g.jkt != jkt:
			oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", "refresh token bound to another key")
			return
		}
		f.refreshes.Add(1)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	g.current = randText()
	f.refresh[g.current] = g
	at := randText()
	f.access[at] = fakeAccess{grant: g}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at, "token_type": "DPoP", "refresh_token": g.current, "expires_in": 3600,
		"scope": g.scope, "sub": fakeDID,
	})
}

func (f *fakeNet) getSession(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme != "DPoP" {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "InvalidToken"})
		return
	}
	jkt, ok := f.checkProof(w, r, fakePDS, f.pdsNonce, tok)
	if !ok {
		return
	}
	f.mu.Lock()
	a, ok := f.access[tok]
	valid := ok && !a.expired && !a.grant.dead && a.grant.jkt == jkt
	f.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token", error_description="expired or unknown token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "InvalidToken"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"did": fakeDID, "handle": fakeHandle})
}

type proofClaims struct {
	JTI   string  `json:"jti"`
	HTM   string  `json:"htm"`
	HTU   string  `json:"htu"`
	IAT   float64 `json:"iat"`
	Nonce string  `json:"nonce"`
	ATH   string  `json:"ath"`
}

// checkProof verifies r's DPoP proof for the server at origin and returns
// the thumbprint of its key. On failure it has answered r.
func (f *fakeNet) checkProof(w http.ResponseWriter, r *http.Request, origin, nonce, accessToken string) (string, bool) {
	isAS := origin == fakeAS
	fail := func(desc string) (string, bool) {
		if isAS {
			oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", desc)
		} else {
			w.Header().Set("WWW-Authenticate", `DPoP error="invalid_dpop_proof"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "InvalidDPoPProof", "message": desc})
		}
		return "", false
	}
	if isAS {
		if err := r.ParseForm(); err != nil {
			return fail("bad form")
		}
	}
	raw := r.Header.Get("DPoP")
	msg, err := jws.Parse([]byte(raw))
	if err != nil || len(msg.Signatures()) != 1 {
		return fail("no DPoP proof")
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	key := h.JWK()
	if h.Type() != "dpop+jwt" || h.Algorithm() != jwa.ES256 || key == nil {
		return fail("bad DPoP header")
	}
	payload, err := jws.Verify([]byte(raw), jws.WithKey(jwa.ES256, key))
	if err != nil {
		return fail("bad DPoP signature")
	}
	var c proofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return fail("bad DPoP claims")
	}
	htu, _, _ := strings.Cut(c.HTU, "?")
	if c.HTM != r.Method || htu != origin+r.URL.Path || c.JTI == "" ||
		time.Since(time.Unix(int64(c.IAT), 0)).Abs() > time.Minute {
		return fail("DPoP htm, htu, jti or iat mismatch")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return fail("DPoP ath mismatch")
		}
	}
	if c.Nonce != nonce {
		w.Header().Set("DPoP-Nonce", nonce)
		if isAS {
			oauthError(w, http.StatusBadRequest, "use_dpop_nonce", "nonce required")
		} else {
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="nonce required"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "use_dpop_nonce"})
		}
		return "", false
	}
	f.mu.Lock()
	replayed := f.jtis[c.JTI]
	f.jtis[c.JTI] = true
	f.mu.Unlock()
	if replayed {
		return fail("DPoP jti replayed")
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return fail("bad DPoP key")
	}
	w.Header().Set("DPoP-Nonce", nonce)
	return base64.RawURLEncoding.EncodeToString(tp), true
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randText() string { return rand.Text() }
