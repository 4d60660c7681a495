package atauthtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const requestURIPrefix = "urn:ietf:params:oauth:request_uri:"

var scopesSupported = []string{"atproto", "transition:generic", "transition:email", "transition:chat.bsky"}

// authRequest is a pushed authorization request.
type authRequest struct {
	uri           string
	client        *client
	auth          clientAuth
	params        PARParams
	codeChallenge string
	jkt           string
	expires       time.Time
	used          bool
	csrf          string
}

// authCode is an authorization code, bound to its request.
type authCode struct {
	req     *authRequest
	did     string
	expires time.Time
	used    bool
	grant   *grant // set once redeemed, so a replayed code can end it
}

// grant is a session at the AS: what a refresh token keeps alive.
type grant struct {
	id       string
	did      string
	client   *client
	auth     clientAuth
	jkt      string
	scope    string
	expires  time.Time
	refresh  string               // the current refresh token
	spent    map[string]time.Time // spent refresh token → when it was spent
	access   []*accessRecord
	dead     bool
	canRenew bool // the client may use refresh tokens
}

func (g *grant) alive(now time.Time) bool { return !g.dead && now.Before(g.expires) }

// accessRecord tracks an issued access token so the PDS can tell expired
// and revoked ones.
type accessRecord struct {
	did     string
	grant   *grant
	expired bool
}

// kill ends the grant and every token of it. The caller holds n.mu.
func (n *Network) kill(g *grant) {
	g.dead = true
	delete(n.refreshIndex, g.refresh)
	for t := range g.spent {
		delete(n.refreshIndex, t)
	}
	delete(n.grants, g.id)
	n.persistLocked()
}

func (n *Network) asHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/oauth-authorization-server", n.failable(http.HandlerFunc(n.handleASMetadata)))
	mux.Handle("POST /oauth/par", n.failable(http.HandlerFunc(n.handlePAR)))
	mux.Handle("POST /oauth/token", n.failable(http.HandlerFunc(n.handleToken)))
	mux.Handle("POST /oauth/revoke", n.failable(http.HandlerFunc(n.handleRevoke)))
	mux.HandleFunc("GET /oauth/jwks", n.handleJWKS)
	mux.HandleFunc("GET /oauth/authorize", n.handleAuthorizePage)
	mux.HandleFunc("POST /oauth/authorize", n.handleAuthorizeSubmit)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOAuthError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// failable answers 503 while FailNext has requests left to fail.
func (n *Network) failable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		fail := n.failNext > 0
		if fail {
			n.failNext--
		}
		n.mu.Unlock()
		if fail {
			writeOAuthError(w, http.StatusServiceUnavailable, "server_error", "injected failure (FailNext)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (n *Network) handleASMetadata(w http.ResponseWriter, r *http.Request) {
	iss := n.IssuerURL()
	n.mu.Lock()
	n.stats.MetadataFetches++
	prompts := slices.Clone(n.promptValues)
	resources := n.pdsURLs()
	n.mu.Unlock()
	m := map[string]any{
		"issuer":                                           iss,
		"authorization_endpoint":                           iss + "/oauth/authorize",
		"token_endpoint":                                   iss + "/oauth/token",
		"pushed_authorization_request_endpoint":            iss + "/oauth/par",
		"revocation_endpoint":                              iss + "/oauth/revoke",
		"jwks_uri":                                         iss + "/oauth/jwks",
		"require_pushed_authorization_requests":            true,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"none", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"ES256"},
		"dpop_signing_alg_values_supported":                []string{"ES256"},
		"scopes_supported":                                 scopesSupported,
		"authorization_response_iss_parameter_supported":   true,
		"client_id_metadata_document_supported":            true,
		"protected_resources":                              resources,
	}
	if len(prompts) > 0 {
		m["prompt_values_supported"] = prompts
	}
	writeJSON(w, http.StatusOK, m)
}

func (n *Network) handleJWKS(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{n.publicKey}})
}

// parseForm reads an application/x-www-form-urlencoded body of at most 64 KiB.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return badRequest("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return badRequest("invalid_request", "unreadable form body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return badRequest("invalid_request", "parameter %q given more than once", k)
		}
	}
	return nil
}

// writeError writes any error of an AS endpoint.
func (n *Network) writeError(w http.ResponseWriter, err error) {
	var de *dpopError
	var oe *oauthError
	switch {
	case errors.As(err, &de):
		n.writeASDPoPError(w, &n.asNonce, de)
	case errors.As(err, &oe):
		writeOAuthError(w, oe.status, oe.code, oe.desc)
	default:
		writeOAuthError(w, http.StatusInternalServerError, "server_error", err.Error())
	}
}

// requireDPoP verifies the DPoP proof of an AS request, which is mandatory.
func (n *Network) requireDPoP(r *http.Request) (dpopProof, error) {
	p, present, err := n.checkDPoP(r, n.IssuerURL(), &n.asNonce, "as:", "")
	if err != nil {
		return dpopProof{}, err
	}
	if !present {
		return dpopProof{}, badRequest("invalid_dpop_proof", "DPoP proof required")
	}
	return p, nil
}

func (n *Network) handlePAR(w http.ResponseWriter, r *http.Request) {
	if err := n.par(w, r); err != nil {
		n.writeError(w, err)
	}
}

// clientRequest is a form request of an authenticated client with its DPoP
// proof: what PAR and the token endpoint both start with.
type clientRequest struct {
	form  url.Values
	proof dpopProof
	c     *client
	auth  clientAuth
}

// readClientRequest parses the form, checks the DPoP proof first, as the
// reference does (the nonce challenge must come before the client assertion
// is spent), then identifies and authenticates the client.
func (n *Network) readClientRequest(w http.ResponseWriter, r *http.Request) (*clientRequest, error) {
	if err := parseForm(w, r); err != nil {
		return nil, err
	}
	proof, err := n.requireDPoP(r)
	if err != nil {
		return nil, err
	}
	f := r.PostForm
	c, err := n.resolveClient(r.Context(), f.Get("client_id"))
	if err != nil {
		return nil, err
	}
	auth, err := n.authenticateClient(c, f)
	if err != nil {
		return nil, err
	}
	return &clientRequest{form: f, proof: proof, c: c, auth: auth}, nil
}

func (n *Network) par(w http.ResponseWriter, r *http.Request) error {
	cr, err := n.readClientRequest(w, r)
	if err != nil {
		return err
	}
	f, proof, c, auth := cr.form, cr.proof, cr.c, cr.auth
	if f.Has("request_uri") || f.Has("request") {
		return badRequest("invalid_request", "request_uri and request objects are not allowed in a pushed authorization request")
	}
	if rt := f.Get("response_type"); rt != "code" {
		return badRequest("invalid_request", `response_type must be "code", got %q`, rt)
	}
	if rm := f.Get("response_mode"); rm != "" && rm != "query" {
		return badRequest("invalid_request", "unsupported response_mode %q", rm)
	}
	redirect, err := c.pickRedirect(f.Get("redirect_uri"))
	if err != nil {
		return badRequest("invalid_request", "%v", strings.TrimPrefix(err.Error(), "atauthtest: "))
	}
	scope := f.Get("scope")
	if scope == "" {
		return badRequest("invalid_request", `"scope" is required`)
	}
	declared := strings.Fields(c.meta.Scope)
	requested := strings.Fields(scope)
	for _, s := range requested {
		if !slices.Contains(declared, s) {
			return badRequest("invalid_scope", "scope %q is not declared in the client metadata", s)
		}
	}
	if !slices.Contains(requested, "atproto") {
		return badRequest("invalid_scope", `the "atproto" scope is required`)
	}
	state := f.Get("state")
	if state == "" {
		return badRequest("invalid_request", `"state" is required`)
	}
	challenge := f.Get("code_challenge")
	if challenge == "" {
		return badRequest("invalid_request", `"code_challenge" is required`)
	}
	if m := f.Get("code_challenge_method"); m != "S256" {
		return badRequest("invalid_request", `code_challenge_method must be "S256", got %q`, m)
	}
	if len(challenge) != 43 || strings.ContainsFunc(challenge, func(r rune) bool { return !isBase64URL(r) }) {
		return badRequest("invalid_request", "code_challenge must be a base64url SHA-256 hash")
	}
	if jkt := f.Get("dpop_jkt"); jkt != "" && jkt != proof.jkt {
		return badRequest("invalid_request", "dpop_jkt does not match the DPoP proof key")
	}
	prompt := f.Get("prompt")
	n.mu.Lock()
	defer n.mu.Unlock()
	if prompt != "" && !slices.Contains(n.promptValues, prompt) {
		return badRequest("invalid_request", "unsupported prompt %q", prompt)
	}
	req := &authRequest{
		uri:    requestURIPrefix + "req-" + n.randomString(16),
		client: c,
		auth:   auth,
		params: PARParams{
			ClientID:    c.id,
			RedirectURI: redirect,
			Scope:       strings.Join(requested, " "),
			State:       state,
			LoginHint:   f.Get("login_hint"),
			Prompt:      prompt,
		},
		codeChallenge: challenge,
		jkt:           proof.jkt,
		expires:       n.cfg.now().Add(parExpiresIn),
		csrf:          n.randomString(16),
	}
	n.purgeRequests()
	n.requests[req.uri] = req
	n.stats.PAR++
	n.lastPAR = req.params
	writeJSON(w, http.StatusCreated, map[string]any{
		"request_uri": req.uri,
		"expires_in":  int(parExpiresIn / time.Second),
	})
	return nil
}

// purgeRequests drops expired requests and codes. The caller holds n.mu.
func (n *Network) purgeRequests() {
	now := n.cfg.now()
	for k, v := range n.requests {
		if now.After(v.expires.Add(time.Minute)) {
			delete(n.requests, k)
		}
	}
	for k, v := range n.codes {
		if now.After(v.expires.Add(time.Hour)) {
			delete(n.codes, k)
		}
	}
}

func isBase64URL(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

func (n *Network) handleToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if err := n.token(w, r); err != nil {
		n.writeError(w, err)
	}
}

func (n *Network) token(w http.ResponseWriter, r *http.Request) error {
	cr, err := n.readClientRequest(w, r)
	if err != nil {
		return err
	}
	f, proof, c, auth := cr.form, cr.proof, cr.c, cr.auth
	switch gt := f.Get("grant_type"); gt {
	case "authorization_code":
		return n.exchangeCode(w, c, auth, proof, f.Get("code"), f.Get("redirect_uri"), f.Get("code_verifier"))
	case "refresh_token":
		if !slices.Contains(c.meta.GrantTypes, "refresh_token") {
			return badRequest("unauthorized_client", "the client may not use the refresh_token grant")
		}
		return n.refresh(w, c, auth, proof, f.Get("refresh_token"))
	case "":
		return badRequest("invalid_request", `"grant_type" is required`)
	default:
		return badRequest("unsupported_grant_type", "unsupported grant_type %q", gt)
	}
}

func (n *Network) exchangeCode(w http.ResponseWriter, c *client, auth clientAuth, proof dpopProof, code, redirect, verifier string) error {
	if code == "" {
		return badRequest("invalid_request", `"code" is required`)
	}
	if verifier == "" {
		return badRequest("invalid_request", `"code_verifier" is required`)
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		return badRequest("invalid_grant", "code_verifier must be 43 to 128 characters")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.cfg.now()
	ac := n.codes[code]
	if ac == nil {
		return badRequest("invalid_grant", "invalid code")
	}
	if ac.used {
		// A replayed code may mean it leaked; end what it granted, as the
		// reference does.
		if ac.grant != nil {
			n.kill(ac.grant)
		}
		return badRequest("invalid_grant", "code replayed")
	}
	ac.used = true
	req := ac.req
	if !now.Before(ac.expires) {
		return badRequest("invalid_grant", "code expired")
	}
	if req.client.id != c.id {
		return badRequest("invalid_grant", "the code was issued to another client")
	}
	if auth.method != req.auth.method || auth.kid != req.auth.kid {
		return badRequest("invalid_grant", "client authentication differs from the pushed authorization request")
	}
	if redirect != req.params.RedirectURI {
		return badRequest("invalid_grant", "redirect_uri does not match the authorization request")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(b64(sum[:])), []byte(req.codeChallenge)) != 1 {
		return badRequest("invalid_grant", "invalid code_verifier")
	}
	if proof.jkt != req.jkt {
		return badRequest("invalid_grant", "the DPoP key differs from the key of the authorization request")
	}
	acct := n.byDID[ac.did]
	if acct == nil {
		return badRequest("invalid_grant", "the account no longer exists")
	}
	life := n.cfg.sessionLife
	if life == 0 {
		life = defaultPublicSessionLife
		if c.confidential() {
			life = defaultConfidentialSessionLf
		}
	}
	g := &grant{
		id:       n.randomString(12),
		did:      acct.DID,
		client:   c,
		auth:     auth,
		jkt:      proof.jkt,
		scope:    req.params.Scope,
		expires:  now.Add(life),
		spent:    make(map[string]time.Time),
		canRenew: slices.Contains(c.meta.GrantTypes, "refresh_token"),
	}
	ac.grant = g
	n.grants[g.id] = g
	resp, err := n.issueTokens(g, now)
	if err != nil {
		n.kill(g)
		return err
	}
	n.stats.AuthorizationCode++
	// Saved before the client sees the tokens, so that none it holds is
	// unknown after a restart.
	n.persistLocked()
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (n *Network) refresh(w http.ResponseWriter, c *client, auth clientAuth, proof dpopProof, token string) error {
	if token == "" {
		return badRequest("invalid_request", `"refresh_token" is required`)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.cfg.now()
	g := n.refreshIndex[token]
	if g == nil || g.dead {
		return badRequest("invalid_grant", "invalid refresh token")
	}
	if g.client.id != c.id {
		return badRequest("invalid_grant", "the refresh token was issued to another client")
	}
	if auth.method != g.auth.method || auth.kid != g.auth.kid {
		return badRequest("invalid_grant", "client authentication differs from the one of the grant")
	}
	if proof.jkt != g.jkt {
		return badRequest("invalid_grant", "the DPoP key differs from the key bound to the grant")
	}
	if !g.alive(now) {
		n.kill(g)
		return badRequest("invalid_grant", "session expired")
	}
	if token != g.refresh {
		spentAt := g.spent[token]
		if n.refreshGrace <= 0 || now.Sub(spentAt) > n.refreshGrace {
			n.kill(g)
			return badRequest("invalid_grant", "refresh token replayed")
		}
	}
	// Rotate: the current token becomes spent, whichever one was presented.
	// A token reused within the grace keeps the time of its first use, so the
	// grace never extends.
	g.spent[g.refresh] = now
	resp, err := n.issueTokens(g, now)
	if err != nil {
		return err
	}
	n.stats.Refresh++
	n.persistLocked()
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// issueTokens mints an access token and, when the client may refresh, a new
// refresh token for g. The caller holds n.mu.
func (n *Network) issueTokens(g *grant, now time.Time) (map[string]any, error) {
	jti := "tok-" + n.randomString(16)
	exp := now.Add(n.cfg.accessTokenTTL)
	claims := map[string]any{
		"iss":       n.IssuerURL(),
		"sub":       g.did,
		"aud":       n.accountPDS(n.byDID[g.did]),
		"scope":     g.scope,
		"client_id": g.client.id,
		"cnf":       map[string]string{"jkt": g.jkt},
		"iat":       now.Unix(),
		"exp":       exp.Unix(),
		"jti":       jti,
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("atauthtest: encoding access token: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "at+jwt"); err != nil {
		return nil, fmt.Errorf("atauthtest: access token header: %w", err)
	}
	if err := hdr.Set(jws.KeyIDKey, n.signingKey.KeyID()); err != nil {
		return nil, fmt.Errorf("atauthtest: access token header: %w", err)
	}
	at, err := jws.Sign(payload, jws.WithKey(jwa.ES256, n.signingKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return nil, fmt.Errorf("atauthtest: signing access token: %w", err)
	}
	rec := &accessRecord{did: g.did, grant: g}
	n.accessTokens[string(at)] = rec
	g.access = append(g.access, rec)

	sub := g.did
	if n.wrongSub != "" {
		sub = n.wrongSub
	}
	resp := map[string]any{
		"access_token": string(at),
		"token_type":   "DPoP",
		"expires_in":   int(n.cfg.accessTokenTTL / time.Second),
		"scope":        g.scope,
		"sub":          sub,
	}
	if g.canRenew {
		g.refresh = "ref-" + n.randomString(32)
		n.refreshIndex[g.refresh] = g
		resp["refresh_token"] = g.refresh
	}
	return resp, nil
}

func (n *Network) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if err := n.revoke(w, r); err != nil {
		n.writeError(w, err)
	}
}

func (n *Network) revoke(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	// DPoP is optional at the revocation endpoint, as in the reference, but
	// a proof that is sent must be valid.
	if _, _, err := n.checkDPoP(r, n.IssuerURL(), &n.asNonce, "as:", ""); err != nil {
		return err
	}
	f := r.PostForm
	c, err := n.resolveClient(r.Context(), f.Get("client_id"))
	if err != nil {
		return err
	}
	if _, err := n.authenticateClient(c, f); err != nil {
		return err
	}
	token := f.Get("token")
	if token == "" {
		return badRequest("invalid_request", `"token" is required`)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var g *grant
	if rec := n.accessTokens[token]; rec != nil {
		g = rec.grant
	} else {
		g = n.refreshIndex[token]
	}
	// RFC 7009 §2.2: an unknown or foreign token is not an error.
	if g != nil && g.client.id == c.id {
		n.kill(g)
	}
	n.stats.Revoke++
	w.WriteHeader(http.StatusOK)
	return nil
}
