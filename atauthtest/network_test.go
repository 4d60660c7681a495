package atauthtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

func mustAccount(t *testing.T, n *Network, handle string) Account {
	t.Helper()
	a, err := n.CreateAccount(handle, "hunter22")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func wantError(t *testing.T, what string, resp response, status int, code string) {
	t.Helper()
	if resp.status != status || resp.str("error") != code {
		t.Errorf("%s: got %d %s; want %d %q", what, resp.status, resp.raw, status, code)
	}
}

func TestPublicLoopbackFlow(t *testing.T) {
	n := NewNetwork(t)
	alice := mustAccount(t, n, "alice.test")
	c := newLoopbackClient(t, n)

	// Discovery, as a client does it from the PDS.
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	getJSON(t, n.PDSURL()+"/.well-known/oauth-protected-resource", &prm)
	if prm.Resource != n.PDSURL() || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != n.IssuerURL() {
		t.Errorf("protected resource metadata: got %+v; want resource %s and AS %s", prm, n.PDSURL(), n.IssuerURL())
	}
	var meta map[string]any
	getJSON(t, n.IssuerURL()+"/.well-known/oauth-authorization-server", &meta)
	if meta["issuer"] != n.IssuerURL() || meta["require_pushed_authorization_requests"] != true {
		t.Errorf("AS metadata: got %v", meta)
	}

	// The first PAR has no nonce and must be challenged.
	f, form := c.parForm("atproto transition:generic", url.Values{"login_hint": {"alice.test"}})
	form.Set("client_id", c.clientID)
	resp := c.postRaw("/oauth/par", form, c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/par"}))
	wantError(t, "PAR without nonce", resp, http.StatusBadRequest, "use_dpop_nonce")
	c.asNonce = resp.header.Get("DPoP-Nonce")
	if c.asNonce == "" {
		t.Fatal("PAR challenge has no DPoP-Nonce header")
	}
	resp = c.postRaw("/oauth/par", form, c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/par", nonce: c.asNonce}))
	if resp.status != http.StatusCreated || !strings.HasPrefix(resp.str("request_uri"), "urn:ietf:params:oauth:request_uri:") || resp.body["expires_in"] != float64(300) {
		t.Fatalf("PAR: got %d %s; want 201 with a request_uri", resp.status, resp.raw)
	}
	f.requestURI = resp.str("request_uri")
	wantPAR := PARParams{ClientID: c.clientID, RedirectURI: c.redirect, Scope: "atproto transition:generic", State: f.state, LoginHint: "alice.test"}
	if diff := cmp.Diff(wantPAR, n.LastPAR()); diff != "" {
		t.Errorf("LastPAR (-want +got):\n%s", diff)
	}

	cb, err := n.Approve(t.Context(), c.authURL(f), alice.Handle, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cb, c.redirect+"?") {
		t.Errorf("callback: got %s; want it under %s", cb, c.redirect)
	}
	code := c.checkCallback(cb, f)

	tok := c.exchange(f, code)
	if tok.status != http.StatusOK {
		t.Fatalf("token: got %d %s; want 200", tok.status, tok.raw)
	}
	if got := tok.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("token Cache-Control: got %q; want no-store", got)
	}
	for key, want := range map[string]string{"token_type": "DPoP", "sub": alice.DID, "scope": "atproto transition:generic"} {
		if got := tok.str(key); got != want {
			t.Errorf("token %s: got %q; want %q", key, got, want)
		}
	}
	if tok.body["expires_in"] != float64(3600) {
		t.Errorf("token expires_in: got %v; want 3600", tok.body["expires_in"])
	}
	if n.ActiveGrants(alice.DID) != 1 {
		t.Errorf("ActiveGrants: got %d; want 1", n.ActiveGrants(alice.DID))
	}

	// The PDS has its own nonce: the first call is challenged.
	first := c.getSessionRaw(tok.str("access_token"), proofOpts{})
	if first.status != http.StatusUnauthorized || !strings.Contains(first.header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) || first.header.Get("DPoP-Nonce") == "" {
		t.Errorf("getSession without nonce: got %d %v; want 401 use_dpop_nonce", first.status, first.header)
	}
	sess := c.getSession(tok.str("access_token"))
	if sess.status != http.StatusOK || sess.str("did") != alice.DID || sess.str("handle") != "alice.test" || sess.body["active"] != true {
		t.Fatalf("getSession: got %d %s; want alice", sess.status, sess.raw)
	}

	ref := c.refresh(tok.str("refresh_token"))
	if ref.status != http.StatusOK {
		t.Fatalf("refresh: got %d %s; want 200", ref.status, ref.raw)
	}
	if ref.str("refresh_token") == "" || ref.str("refresh_token") == tok.str("refresh_token") {
		t.Errorf("refresh: got refresh token %q; want a new one", ref.str("refresh_token"))
	}
	if got := ref.str("scope"); got != "atproto transition:generic" {
		t.Errorf("refresh scope: got %q; want the granted scope", got)
	}
	if sess := c.getSession(ref.str("access_token")); sess.status != http.StatusOK {
		t.Errorf("getSession after refresh: got %d %s; want 200", sess.status, sess.raw)
	}

	replay := c.refresh(tok.str("refresh_token"))
	wantError(t, "replayed refresh", replay, http.StatusBadRequest, "invalid_grant")
	if got := replay.str("error_description"); got != "refresh token replayed" {
		t.Errorf("replayed refresh description: got %q; want %q", got, "refresh token replayed")
	}
	if got := n.ActiveGrants(alice.DID); got != 0 {
		t.Errorf("ActiveGrants after replay: got %d; want 0", got)
	}
	wantError(t, "refresh after the grant died", c.refresh(ref.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	if sess := c.getSession(ref.str("access_token")); sess.status != http.StatusUnauthorized || !strings.Contains(sess.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("getSession after the grant died: got %d %v; want 401 invalid_token", sess.status, sess.header)
	}

	st := n.Stats()
	if st.PAR != 1 || st.AuthorizationCode != 1 || st.Refresh != 1 || st.MetadataFetches != 1 || st.ClientMetadataFetches != 0 {
		t.Errorf("Stats: got %+v; want 1 PAR, 1 code, 1 refresh, 1 metadata fetch, 0 client fetches", st)
	}
}

func getJSON(t *testing.T, u string, v any) http.Header {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got status %d; want 200", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp.Header
}

// clientServer serves a confidential client's metadata and JWKS.
type clientServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	meta map[string]any
	jwks []byte
}

func newConfidentialClient(t *testing.T, n *Network) (*testClient, *clientServer) {
	t.Helper()
	cs := &clientServer{}
	cs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/client-metadata.json":
			json.NewEncoder(w).Encode(cs.meta)
		case "/jwks.json":
			w.Write(cs.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(cs.srv.Close)

	signer := newKey(t, "client-key-1")
	pub, err := signer.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	set.AddKey(pub)
	cs.jwks, err = json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	clientID := cs.srv.URL + "/client-metadata.json"
	redirect := cs.srv.URL + "/callback"
	cs.meta = map[string]any{
		"client_id":                       clientID,
		"client_name":                     "Confidential <Test> App",
		"application_type":                "web",
		"redirect_uris":                   []string{redirect},
		"scope":                           "atproto transition:generic",
		"grant_types":                     []string{"authorization_code", "refresh_token"},
		"response_types":                  []string{"code"},
		"dpop_bound_access_tokens":        true,
		"token_endpoint_auth_method":      "private_key_jwt",
		"token_endpoint_auth_signing_alg": "ES256",
		"jwks_uri":                        cs.srv.URL + "/jwks.json",
	}
	c := &testClient{
		t:        t,
		n:        n,
		clientID: clientID,
		redirect: redirect,
		dpopKey:  newKey(t, ""),
		signer:   signer,
		now:      time.Now,
		http:     &http.Client{Timeout: 10 * time.Second},
	}
	return c, cs
}

func (cs *clientServer) set(key string, v any) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if v == nil {
		delete(cs.meta, key)
		return
	}
	cs.meta[key] = v
}

func TestConfidentialClientFlow(t *testing.T) {
	n := NewNetwork(t)
	bob := mustAccount(t, n, "bob.test")
	c, _ := newConfidentialClient(t, n)

	tok := c.login(bob, "atproto")
	if tok.str("sub") != bob.DID || tok.str("scope") != "atproto" {
		t.Errorf("token: got %s; want sub %s and scope atproto", tok.raw, bob.DID)
	}
	if sess := c.getSession(tok.str("access_token")); sess.str("did") != bob.DID {
		t.Errorf("getSession: got %d %s; want bob", sess.status, sess.raw)
	}
	ref := c.refresh(tok.str("refresh_token"))
	if ref.status != http.StatusOK {
		t.Fatalf("refresh: got %d %s; want 200", ref.status, ref.raw)
	}
	if st := n.Stats(); st.ClientMetadataFetches < 3 {
		t.Errorf("ClientMetadataFetches: got %d; want at least 3 (PAR, code, refresh)", st.ClientMetadataFetches)
	}

	// The access token revokes the whole grant.
	rev := c.post("/oauth/revoke", url.Values{"token": {ref.str("access_token")}})
	if rev.status != http.StatusOK {
		t.Fatalf("revoke: got %d %s; want 200", rev.status, rev.raw)
	}
	if got := n.ActiveGrants(bob.DID); got != 0 {
		t.Errorf("ActiveGrants after revoke: got %d; want 0", got)
	}
	wantError(t, "refresh after revoke", c.refresh(ref.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	if rev := c.post("/oauth/revoke", url.Values{"token": {"ref-unknown"}}); rev.status != http.StatusOK {
		t.Errorf("revoke of an unknown token: got %d %s; want 200", rev.status, rev.raw)
	}
	if got := n.Stats().Revoke; got != 2 {
		t.Errorf("Stats.Revoke: got %d; want 2", got)
	}
}

func TestRevokeRefreshToken(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "carol.test")
	c := newLoopbackClient(t, n)
	tok := c.login(a, "atproto")
	if rev := c.post("/oauth/revoke", url.Values{"token": {tok.str("refresh_token")}}); rev.status != http.StatusOK {
		t.Fatalf("revoke: got %d %s; want 200", rev.status, rev.raw)
	}
	if got := n.ActiveGrants(a.DID); got != 0 {
		t.Errorf("ActiveGrants: got %d; want 0", got)
	}
	if sess := c.getSession(tok.str("access_token")); sess.status != http.StatusUnauthorized {
		t.Errorf("getSession after revoke: got %d; want 401", sess.status)
	}
}

func TestClientAssertionChecks(t *testing.T) {
	n := NewNetwork(t)
	c, cs := newConfidentialClient(t, n)
	_, form := c.parForm("atproto", nil)
	form.Set("client_id", c.clientID)
	form.Set("client_assertion_type", clientAssertionType)

	send := func(assertion string) response {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if assertion != "" {
			f.Set("client_assertion", assertion)
		}
		resp := c.postRaw("/oauth/par", f, c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/par", nonce: c.asNonce}))
		if nonce := resp.header.Get("DPoP-Nonce"); nonce != "" {
			c.asNonce = nonce
		}
		return resp
	}
	send("") // obtain a nonce

	replayed := c.assertion()
	if resp := send(replayed); resp.status != http.StatusCreated {
		t.Fatalf("PAR: got %d %s; want 201", resp.status, resp.raw)
	}
	tests := []struct {
		name      string
		assertion string
		code      string
	}{
		{"missing", "", "invalid_request"},
		{"replayed", replayed, "invalid_client"},
		{"wrong aud", c.assertionWith(map[string]any{"aud": n.PDSURL()}), "invalid_client"},
		{"wrong iss", c.assertionWith(map[string]any{"iss": "https://other.example"}), "invalid_client"},
		{"too old", c.assertionWith(map[string]any{"iat": time.Now().Add(-2 * time.Minute).Unix()}), "invalid_client"},
		{"expired", c.assertionWith(map[string]any{"exp": time.Now().Add(-time.Second).Unix()}), "invalid_client"},
		{"no jti", c.assertionWith(map[string]any{"jti": nil}), "invalid_client"},
		{"not a JWT", "garbage", "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, "PAR", send(tt.assertion), http.StatusBadRequest, tt.code)
		})
	}
	t.Run("unknown key", func(t *testing.T) {
		other := *c
		other.signer = newKey(t, "other-key")
		wantError(t, "PAR", send(other.assertion()), http.StatusBadRequest, "invalid_client")
	})
	t.Run("metadata client_id mismatch", func(t *testing.T) {
		cs.set("client_id", "https://elsewhere.example/client.json")
		defer cs.set("client_id", c.clientID)
		wantError(t, "PAR", send(c.assertion()), http.StatusBadRequest, "invalid_client_metadata")
	})
	t.Run("metadata without dpop_bound_access_tokens", func(t *testing.T) {
		cs.set("dpop_bound_access_tokens", false)
		defer cs.set("dpop_bound_access_tokens", true)
		wantError(t, "PAR", send(c.assertion()), http.StatusBadRequest, "invalid_client_metadata")
	})
	t.Run("metadata with a bad signing alg", func(t *testing.T) {
		cs.set("token_endpoint_auth_signing_alg", "RS256")
		defer cs.set("token_endpoint_auth_signing_alg", "ES256")
		wantError(t, "PAR", send(c.assertion()), http.StatusBadRequest, "invalid_client_metadata")
	})
}

func TestDeny(t *testing.T) {
	n := NewNetwork(t)
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", nil)
	cb, err := n.Deny(t.Context(), c.authURL(f))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("error") != "access_denied" || q.Get("error_description") == "" || q.Get("state") != f.state || q.Get("iss") != n.IssuerURL() || q.Has("code") {
		t.Errorf("Deny: got %s; want access_denied with state and iss", cb)
	}
	// The request is spent.
	if _, err := n.Deny(t.Context(), c.authURL(f)); err == nil {
		t.Error("second Deny: got nil error; want the spent request refused")
	}
}

func TestBadPassword(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "dave.test")
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", nil)
	if _, err := n.Approve(t.Context(), c.authURL(f), a.Handle, "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Approve with a bad password: got %v; want a 401 error", err)
	}
	// The request survives a bad password, as the page lets the user retry.
	cb, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password)
	if err != nil {
		t.Fatal(err)
	}
	c.checkCallback(cb, f)
}

func TestBadPKCE(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "erin.test")
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", nil)
	cb, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password)
	if err != nil {
		t.Fatal(err)
	}
	code := c.checkCallback(cb, f)
	bad := f
	bad.verifier = strings.Repeat("x", 43)
	wantError(t, "token with a wrong verifier", c.exchange(bad, code), http.StatusBadRequest, "invalid_grant")
	// Codes are single use, even after a failure.
	wantError(t, "token with a spent code", c.exchange(f, code), http.StatusBadRequest, "invalid_grant")

	_, form := c.parForm("atproto", nil)
	form.Set("code_challenge_method", "plain")
	wantError(t, "PAR with plain PKCE", c.post("/oauth/par", form), http.StatusBadRequest, "invalid_request")
	form.Del("code_challenge")
	form.Set("code_challenge_method", "S256")
	wantError(t, "PAR without a challenge", c.post("/oauth/par", form), http.StatusBadRequest, "invalid_request")
}

func TestCodeReplayKillsGrant(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "frank.test")
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", nil)
	cb, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password)
	if err != nil {
		t.Fatal(err)
	}
	code := c.checkCallback(cb, f)
	if resp := c.exchange(f, code); resp.status != http.StatusOK {
		t.Fatalf("token: got %d %s; want 200", resp.status, resp.raw)
	}
	wantError(t, "replayed code", c.exchange(f, code), http.StatusBadRequest, "invalid_grant")
	if got := n.ActiveGrants(a.DID); got != 0 {
		t.Errorf("ActiveGrants after code replay: got %d; want 0", got)
	}
}

func TestDPoPChecks(t *testing.T) {
	n := NewNetwork(t)
	c := newLoopbackClient(t, n)
	c.startFlow("atproto", nil) // obtains a nonce
	_, form := c.parForm("atproto", nil)
	form.Set("client_id", c.clientID)
	htu := n.IssuerURL() + "/oauth/par"

	replayed := c.proof(proofOpts{htm: "POST", htu: htu, nonce: c.asNonce})
	if resp := c.postRaw("/oauth/par", form, replayed); resp.status != http.StatusCreated {
		t.Fatalf("PAR: got %d %s; want 201", resp.status, resp.raw)
	}
	tests := []struct {
		name  string
		proof string
		code  string
	}{
		{"missing", "", "invalid_dpop_proof"},
		{"replayed", replayed, "invalid_dpop_proof"},
		{"wrong htm", c.proof(proofOpts{htm: "GET", htu: htu, nonce: c.asNonce}), "invalid_dpop_proof"},
		{"wrong htu", c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/token", nonce: c.asNonce}), "invalid_dpop_proof"},
		{"wrong typ", c.proof(proofOpts{htm: "POST", htu: htu, nonce: c.asNonce, typ: "JWT"}), "invalid_dpop_proof"},
		{"old iat", c.proof(proofOpts{htm: "POST", htu: htu, nonce: c.asNonce, iat: time.Now().Add(-10 * time.Minute)}), "invalid_dpop_proof"},
		{"future iat", c.proof(proofOpts{htm: "POST", htu: htu, nonce: c.asNonce, iat: time.Now().Add(10 * time.Minute)}), "invalid_dpop_proof"},
		{"private key in header", c.proof(proofOpts{htm: "POST", htu: htu, nonce: c.asNonce, embedPrivate: true}), "invalid_dpop_proof"},
		{"ath at the AS", c.proof(proofOpts{htm: "POST", htu: htu, nonce: c.asNonce, ath: ath("x")}), "invalid_dpop_proof"},
		{"stale nonce", c.proof(proofOpts{htm: "POST", htu: htu, nonce: "stale"}), "use_dpop_nonce"},
		{"not a JWT", "garbage", "invalid_dpop_proof"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, "PAR", c.postRaw("/oauth/par", form, tt.proof), http.StatusBadRequest, tt.code)
		})
	}
	t.Run("htu with a query", func(t *testing.T) {
		p := c.proof(proofOpts{htm: "POST", htu: htu + "?x=1", nonce: c.asNonce})
		if resp := c.postRaw("/oauth/par", form, p); resp.status != http.StatusCreated {
			t.Errorf("PAR: got %d %s; want 201 (query ignored, as the reference does)", resp.status, resp.raw)
		}
	})
}

func TestKeyBinding(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "gina.test")
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", nil)
	cb, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password)
	if err != nil {
		t.Fatal(err)
	}
	code := c.checkCallback(cb, f)

	thief := *c
	thief.dpopKey = newKey(t, "")
	wantError(t, "code with another DPoP key", thief.exchange(f, code), http.StatusBadRequest, "invalid_grant")

	tok := c.login(a, "atproto")
	wantError(t, "refresh with another DPoP key", thief.refresh(tok.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	if sess := thief.getSession(tok.str("access_token")); sess.status != http.StatusUnauthorized || sess.str("error") != "invalid_token" {
		t.Errorf("getSession with another DPoP key: got %d %s; want 401 invalid_token", sess.status, sess.raw)
	}
	if sess := c.getSessionRaw(tok.str("access_token"), proofOpts{nonce: c.pdsNonce, ath: ath("other")}); sess.status != http.StatusUnauthorized {
		t.Errorf("getSession with a wrong ath: got %d %s; want 401", sess.status, sess.raw)
	}
	// The real key still works: the failed attempts did not hurt the grant.
	if ref := c.refresh(tok.str("refresh_token")); ref.status != http.StatusOK {
		t.Errorf("refresh with the bound key: got %d %s; want 200", ref.status, ref.raw)
	}
}

func TestInvalidScope(t *testing.T) {
	n := NewNetwork(t)
	c := newLoopbackClient(t, n)
	for _, scope := range []string{"atproto transition:email", "transition:generic"} {
		_, form := c.parForm(scope, nil)
		wantError(t, "PAR scope "+scope, c.post("/oauth/par", form), http.StatusBadRequest, "invalid_scope")
	}
}

func TestPromptCreate(t *testing.T) {
	n := NewNetwork(t)
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", url.Values{"prompt": {"create"}})
	page := getPage(t, c.authURL(f))
	if !strings.Contains(page, "Create an account") {
		t.Errorf("prompt=create page does not offer sign-up:\n%s", page)
	}
	cb, err := n.Approve(t.Context(), c.authURL(f), "newbie.test", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	code := c.checkCallback(cb, f)
	tok := c.exchange(f, code)
	accounts := n.Accounts()
	if len(accounts) != 1 || accounts[0].Handle != "newbie.test" || tok.str("sub") != accounts[0].DID {
		t.Fatalf("after sign-up: got accounts %+v and token %s; want newbie.test", accounts, tok.raw)
	}
	if got := n.LastPAR().Prompt; got != "create" {
		t.Errorf("LastPAR().Prompt: got %q; want create", got)
	}
	// A handle that exists just signs in.
	f = c.startFlow("atproto", url.Values{"prompt": {"create"}})
	if _, err := n.Approve(t.Context(), c.authURL(f), "newbie.test", "s3cret"); err != nil {
		t.Errorf("Approve with an existing handle: %v", err)
	}
}

func TestPromptNone(t *testing.T) {
	n := NewNetwork(t)
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", url.Values{"prompt": {"none"}})
	cb, err := n.Approve(t.Context(), c.authURL(f), "x.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(cb); u.Query().Get("error") != "login_required" {
		t.Errorf("prompt=none: got %s; want error=login_required", cb)
	}
}

func getPage(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d; want 200", u, resp.StatusCode)
	}
	return string(b)
}

func TestAuthorizePage(t *testing.T) {
	n := NewNetwork(t)
	mustAccount(t, n, "hana.test")
	c, _ := newConfidentialClient(t, n)
	f := c.startFlow("atproto transition:generic", url.Values{"login_hint": {"hana.test"}})
	page := getPage(t, c.authURL(f))
	for _, want := range []string{"Confidential &lt;Test&gt; App", `value="hana.test"`, "transition:generic", `name="password"`, `value="deny"`, `value="approve"`} {
		if !strings.Contains(page, want) {
			t.Errorf("authorize page lacks %q", want)
		}
	}
	if strings.Contains(page, "<Test>") {
		t.Error("authorize page does not escape the client name")
	}
	// A forged form is refused.
	resp, err := http.PostForm(n.IssuerURL()+"/oauth/authorize", url.Values{"request_uri": {f.requestURI}, "csrf": {"forged"}, "action": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged form: got %d; want 403", resp.StatusCode)
	}
	// An unknown request gets an error page.
	resp, err = http.Get(n.IssuerURL() + "/oauth/authorize?client_id=x&request_uri=urn:ietf:params:oauth:request_uri:nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown request_uri: got %d; want 400", resp.StatusCode)
	}
}

func TestLoopbackRedirects(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "ivy.test")
	tests := []struct {
		name     string
		clientID string
		redirect string
		ok       bool
	}{
		{"default redirect, any port", "http://localhost", "http://127.0.0.1:54321/", true},
		{"default ipv6 redirect", "http://localhost", "http://[::1]:8080/", true},
		{"registered path, other port", loopbackClientID("http://127.0.0.1/cb", "atproto"), "http://127.0.0.1:9999/cb", true},
		{"registered path, other path", loopbackClientID("http://127.0.0.1/cb", "atproto"), "http://127.0.0.1:9999/other", false},
		{"localhost redirect in the client id", loopbackClientID("http://localhost/cb", "atproto"), "http://localhost/cb", false},
		{"client id with a port", "http://localhost:8080", "http://127.0.0.1/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newLoopbackClient(t, n)
			c.clientID, c.redirect = tt.clientID, tt.redirect
			f, form := c.parForm("atproto", nil)
			resp := c.post("/oauth/par", form)
			if !tt.ok {
				if resp.status != http.StatusBadRequest {
					t.Errorf("PAR: got %d %s; want 400", resp.status, resp.raw)
				}
				return
			}
			if resp.status != http.StatusCreated {
				t.Fatalf("PAR: got %d %s; want 201", resp.status, resp.raw)
			}
			f.requestURI = resp.str("request_uri")
			cb, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(cb, tt.redirect+"?") {
				t.Errorf("callback: got %s; want it under %s", cb, tt.redirect)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "Jane.Test")
	b := mustAccount(t, n, "kim.test")
	if !regexp.MustCompile(`^did:plc:[a-z2-7]{24}$`).MatchString(a.DID) {
		t.Errorf("DID: got %q; want did:plc: and 24 base32 characters", a.DID)
	}
	if a.Handle != "jane.test" {
		t.Errorf("handle: got %q; want it lower-cased", a.Handle)
	}
	if _, err := n.CreateAccount("jane.test", "x"); !errors.Is(err, ErrHandleTaken) {
		t.Errorf("duplicate handle: got %v; want ErrHandleTaken", err)
	}
	if _, err := n.CreateAccount("not a handle", "x"); err == nil {
		t.Error("invalid handle: got nil error")
	}

	ids := map[string]string{}
	for _, acct := range []Account{a, b} {
		var doc identity.DIDDocument
		getJSON(t, n.PLCURL()+"/"+acct.DID, &doc)
		ident := identity.ParseIdentity(&doc)
		if got := ident.PDSEndpoint(); got != n.PDSURL() {
			t.Errorf("%s PDS endpoint: got %q; want %q", acct.Handle, got, n.PDSURL())
		}
		if got, err := ident.DeclaredHandle(); err != nil || got.String() != acct.Handle {
			t.Errorf("%s handle in DID document: got %q, %v", acct.Handle, got, err)
		}
		if _, err := ident.PublicKey(); err != nil {
			t.Errorf("%s public key: %v", acct.Handle, err)
		}
		ids[acct.Handle] = doc.Service[0].ID
	}
	if ids["jane.test"] != "#atproto_pds" || ids["kim.test"] != b.DID+"#atproto_pds" {
		t.Errorf("service ids: got %v; want one relative and one absolute", ids)
	}

	resp, err := http.Get(n.PLCURL() + "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown DID: got %d; want 404", resp.StatusCode)
	}

	var did struct{ DID string }
	getJSON(t, n.HandleResolverURL()+"/xrpc/com.atproto.identity.resolveHandle?handle=kim.test", &did)
	if did.DID != b.DID {
		t.Errorf("resolveHandle: got %q; want %q", did.DID, b.DID)
	}
	resp, err = http.Get(n.HandleResolverURL() + "/xrpc/com.atproto.identity.resolveHandle?handle=nobody.test")
	if err != nil {
		t.Fatal(err)
	}
	var xe map[string]string
	json.NewDecoder(resp.Body).Decode(&xe)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || xe["error"] != "InvalidRequest" {
		t.Errorf("resolveHandle of an unknown handle: got %d %v; want 400 InvalidRequest", resp.StatusCode, xe)
	}

	req, err := http.NewRequest(http.MethodGet, n.PDSURL()+"/.well-known/atproto-did", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "jane.test"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != a.DID {
		t.Errorf("atproto-did for jane.test: got %d %q; want %q", resp.StatusCode, body, a.DID)
	}
}

func TestForceNonceChallenge(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "liz.test")
	c := newLoopbackClient(t, n)
	tok := c.login(a, "atproto")
	if sess := c.getSession(tok.str("access_token")); sess.status != http.StatusOK {
		t.Fatalf("getSession: got %d", sess.status)
	}
	n.ForceNonceChallenge()
	oldAS, oldPDS := c.asNonce, c.pdsNonce

	_, form := c.parForm("atproto", nil)
	form.Set("client_id", c.clientID)
	resp := c.postRaw("/oauth/par", form, c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/par", nonce: oldAS}))
	wantError(t, "PAR after ForceNonceChallenge", resp, http.StatusBadRequest, "use_dpop_nonce")
	if got := resp.header.Get("DPoP-Nonce"); got == "" || got == oldAS {
		t.Errorf("challenge nonce: got %q; want a new one", got)
	}
	sess := c.getSessionRaw(tok.str("access_token"), proofOpts{nonce: oldPDS})
	if sess.status != http.StatusUnauthorized || sess.header.Get("DPoP-Nonce") == oldPDS {
		t.Errorf("getSession after ForceNonceChallenge: got %d nonce %q; want 401 with a new nonce", sess.status, sess.header.Get("DPoP-Nonce"))
	}
	// Only the next request is challenged.
	if sess := c.getSession(tok.str("access_token")); sess.status != http.StatusOK {
		t.Errorf("getSession with the new nonce: got %d %s; want 200", sess.status, sess.raw)
	}
	c.startFlow("atproto", nil)
}

func TestNonceRotation(t *testing.T) {
	clock := newFakeClock()
	n := NewNetwork(t, WithClock(clock.Now), WithNonceRotation(time.Minute))
	c := newLoopbackClient(t, n)
	c.now = clock.Now
	c.startFlow("atproto", nil)
	first := c.asNonce
	clock.Advance(90 * time.Second)
	// One rotation later the old nonce still works.
	_, form := c.parForm("atproto", nil)
	form.Set("client_id", c.clientID)
	if resp := c.postRaw("/oauth/par", form, c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/par", nonce: first})); resp.status != http.StatusCreated {
		t.Errorf("PAR with the previous nonce: got %d %s; want 201", resp.status, resp.raw)
	}
	clock.Advance(3 * time.Minute)
	resp := c.postRaw("/oauth/par", form, c.proof(proofOpts{htm: "POST", htu: n.IssuerURL() + "/oauth/par", nonce: first}))
	wantError(t, "PAR with a stale nonce", resp, http.StatusBadRequest, "use_dpop_nonce")
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestExpireAccessTokens(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "max.test")
	c := newLoopbackClient(t, n)
	tok := c.login(a, "atproto")
	n.ExpireAccessTokens(a.DID)
	sess := c.getSession(tok.str("access_token"))
	if sess.status != http.StatusUnauthorized || !strings.Contains(sess.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("getSession with an expired token: got %d %v; want 401 invalid_token", sess.status, sess.header)
	}
	ref := c.refresh(tok.str("refresh_token"))
	if ref.status != http.StatusOK {
		t.Fatalf("refresh: got %d %s; want 200", ref.status, ref.raw)
	}
	if sess := c.getSession(ref.str("access_token")); sess.status != http.StatusOK {
		t.Errorf("getSession with the new token: got %d %s; want 200", sess.status, sess.raw)
	}
}

func TestAccessTokenTTLAndSessionLifetime(t *testing.T) {
	clock := newFakeClock()
	n := NewNetwork(t, WithClock(clock.Now), WithAccessTokenTTL(time.Minute), WithSessionLifetime(time.Hour))
	a := mustAccount(t, n, "ned.test")
	c := newLoopbackClient(t, n)
	c.now = clock.Now
	tok := c.login(a, "atproto")
	if tok.body["expires_in"] != float64(60) {
		t.Errorf("expires_in: got %v; want 60", tok.body["expires_in"])
	}
	clock.Advance(2 * time.Minute)
	if sess := c.getSession(tok.str("access_token")); sess.status != http.StatusUnauthorized {
		t.Errorf("getSession after the TTL: got %d; want 401", sess.status)
	}
	ref := c.refresh(tok.str("refresh_token"))
	if ref.status != http.StatusOK {
		t.Fatalf("refresh: got %d %s; want 200", ref.status, ref.raw)
	}
	clock.Advance(time.Hour)
	if got := n.ActiveGrants(a.DID); got != 0 {
		t.Errorf("ActiveGrants after the session lifetime: got %d; want 0", got)
	}
	wantError(t, "refresh after the session lifetime", c.refresh(ref.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
}

func TestRefreshGrace(t *testing.T) {
	clock := newFakeClock()
	n := NewNetwork(t, WithClock(clock.Now))
	a := mustAccount(t, n, "olga.test")
	c := newLoopbackClient(t, n)
	c.now = clock.Now
	n.SetRefreshGrace(10 * time.Second)
	tok := c.login(a, "atproto")
	if ref := c.refresh(tok.str("refresh_token")); ref.status != http.StatusOK {
		t.Fatalf("refresh: got %d %s", ref.status, ref.raw)
	}
	clock.Advance(5 * time.Second)
	again := c.refresh(tok.str("refresh_token"))
	if again.status != http.StatusOK {
		t.Fatalf("reuse within the grace: got %d %s; want 200", again.status, again.raw)
	}
	clock.Advance(10 * time.Second)
	wantError(t, "reuse after the grace", c.refresh(tok.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	if got := n.ActiveGrants(a.DID); got != 0 {
		t.Errorf("ActiveGrants after reuse past the grace: got %d; want 0", got)
	}
}

func TestFailNext(t *testing.T) {
	n := NewNetwork(t)
	c := newLoopbackClient(t, n)
	n.FailNext(2)
	for i := range 2 {
		resp, err := http.Get(n.IssuerURL() + "/.well-known/oauth-authorization-server")
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || body["error"] != "server_error" {
			t.Errorf("request %d: got %d %v; want 503 server_error", i, resp.StatusCode, body)
		}
	}
	c.startFlow("atproto", nil)
	if got := n.Stats().MetadataFetches; got != 0 {
		t.Errorf("MetadataFetches: got %d; want failed fetches not counted", got)
	}
}

func TestSetLatency(t *testing.T) {
	n := NewNetwork(t)
	n.SetLatency(100 * time.Millisecond)
	start := time.Now()
	var m map[string]any
	getJSON(t, n.PDSURL()+"/.well-known/oauth-protected-resource", &m)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("request took %v; want at least 100ms", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.IssuerURL()+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("request with a short deadline: got nil error; want a timeout")
	}
}

func TestWrongIssuerAndSub(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "pat.test")
	c := newLoopbackClient(t, n)
	n.SetWrongIssuer(true)
	f := c.startFlow("atproto", nil)
	cb, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("iss"); got == n.IssuerURL() || got == "" {
		t.Errorf("iss with SetWrongIssuer: got %q; want another issuer", got)
	}
	n.SetWrongIssuer(false)
	n.SetWrongSub("did:plc:wrongwrongwrongwrongwron")
	tok := c.exchange(f, u.Query().Get("code"))
	if got := tok.str("sub"); got != "did:plc:wrongwrongwrongwrongwron" {
		t.Errorf("sub with SetWrongSub: got %q", got)
	}
	n.SetWrongSub("")
	if got := c.refresh(tok.str("refresh_token")).str("sub"); got != a.DID {
		t.Errorf("sub after SetWrongSub(\"\"): got %q; want %q", got, a.DID)
	}
}

func TestPromptValues(t *testing.T) {
	n := NewNetwork(t, WithPromptValues([]string{"login"}))
	c := newLoopbackClient(t, n)
	var meta map[string]any
	getJSON(t, n.IssuerURL()+"/.well-known/oauth-authorization-server", &meta)
	if diff := cmp.Diff([]any{"login"}, meta["prompt_values_supported"]); diff != "" {
		t.Errorf("prompt_values_supported (-want +got):\n%s", diff)
	}
	_, form := c.parForm("atproto", url.Values{"prompt": {"create"}})
	wantError(t, "PAR with an unsupported prompt", c.post("/oauth/par", form), http.StatusBadRequest, "invalid_request")

	n.SetPromptValues(nil)
	meta = nil
	getJSON(t, n.IssuerURL()+"/.well-known/oauth-authorization-server", &meta)
	if _, ok := meta["prompt_values_supported"]; ok {
		t.Errorf("prompt_values_supported: got %v; want the field omitted", meta["prompt_values_supported"])
	}
	_, form = c.parForm("atproto", url.Values{"prompt": {"login"}})
	wantError(t, "PAR with a prompt when none is supported", c.post("/oauth/par", form), http.StatusBadRequest, "invalid_request")
	c.startFlow("atproto", nil)

	var def map[string]any
	getJSON(t, NewNetwork(t).IssuerURL()+"/.well-known/oauth-authorization-server", &def)
	if diff := cmp.Diff([]any{"none", "login", "consent", "select_account", "create"}, def["prompt_values_supported"]); diff != "" {
		t.Errorf("default prompt_values_supported (-want +got):\n%s", diff)
	}
}

func TestRequestURISingleUse(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "quin.test")
	c := newLoopbackClient(t, n)
	f := c.startFlow("atproto", nil)
	if _, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Approve(t.Context(), c.authURL(f), a.Handle, a.Password); err == nil {
		t.Error("second Approve of one request: got nil error")
	}
}

func TestConcurrentLogins(t *testing.T) {
	n := NewNetwork(t)
	a := mustAccount(t, n, "ray.test")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := newLoopbackClient(t, n)
			tok := c.login(a, "atproto")
			if sess := c.getSession(tok.str("access_token")); sess.status != http.StatusOK {
				t.Errorf("getSession: got %d %s", sess.status, sess.raw)
			}
			_ = n.Stats()
			_ = n.LastPAR()
		})
	}
	wg.Wait()
	if got := n.ActiveGrants(a.DID); got != 8 {
		t.Errorf("ActiveGrants: got %d; want 8", got)
	}
}

func TestStart(t *testing.T) {
	n, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	n.Close() // idempotent
	if _, err := Start(WithAccessTokenTTL(-time.Second)); err == nil {
		t.Error("Start with a negative TTL: got nil error")
	}
}
