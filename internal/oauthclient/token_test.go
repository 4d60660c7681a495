package oauthclient

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testGrant(t *testing.T, c *Client, f *fakeServer) Grant {
	t.Helper()
	m, err := c.AuthServerMetadata(t.Context(), f.issuer)
	if err != nil {
		t.Fatalf("AuthServerMetadata: %v", err)
	}
	return m.Grant(mustKey(t))
}

func TestExchangeCode(t *testing.T) {
	f := newFakeServer(t)
	clock := newFakeClock()
	sk := mustKey(t)
	c := newTestClient(t, f, clock, withSigner(mustSigner(t, SigningKey{ID: "k1", Key: sk})))
	g := testGrant(t, c, f)

	ts, err := c.ExchangeCode(t.Context(), g, "cod-1", testVerifier)
	if err != nil {
		t.Fatalf("ExchangeCode: %v", err)
	}
	want := &TokenSet{
		AccessToken:  "at-1",
		RefreshToken: "ref-1",
		TokenType:    "DPoP",
		Scope:        "atproto transition:generic",
		Sub:          testDID,
		ExpiresAt:    clock.Now().Add(3599 * time.Second),
	}
	if diff := cmp.Diff(want, ts); diff != "" {
		t.Errorf("TokenSet mismatch (-want +got):\n%s", diff)
	}

	r := f.requestsTo("/oauth/token")[0]
	form := r.form
	assertion := form.Get("client_assertion")
	form.Del("client_assertion")
	wantForm := url.Values{
		"grant_type":            {"authorization_code"},
		"code":                  {"cod-1"},
		"redirect_uri":          {testRedirectURI},
		"code_verifier":         {testVerifier},
		"client_id":             {testClientID},
		"client_assertion_type": {ClientAssertionType},
	}
	if diff := cmp.Diff(wantForm, form); diff != "" {
		t.Errorf("token form mismatch (-want +got):\n%s", diff)
	}
	if _, claims := verifyJWS(t, assertion, &sk.PublicKey); claims["aud"] != f.issuer {
		t.Errorf("assertion aud: got %v; want %q", claims["aud"], f.issuer)
	}
	dpop := verifyDPoP(t, r.header.Get("DPoP"), g.DPoPKey)
	if dpop["htu"] != f.issuer+"/oauth/token" || dpop["htm"] != "POST" {
		t.Errorf("DPoP htm/htu: got %v %v; want POST %s/oauth/token", dpop["htm"], dpop["htu"], f.issuer)
	}
}

func TestExchangeCodeNonceChallenge(t *testing.T) {
	for _, shape := range []string{"400 JSON", "401 WWW-Authenticate"} {
		t.Run(shape, func(t *testing.T) {
			f := newFakeServer(t)
			f.handle("/oauth/token", nonceChallenge(t, shape, "tok-nonce", jsonHandler(http.StatusOK, validTokenResponse())))
			c := newTestClient(t, f, newFakeClock())
			if _, err := c.ExchangeCode(t.Context(), testGrant(t, c, f), "cod-1", testVerifier); err != nil {
				t.Fatalf("ExchangeCode: %v", err)
			}
			if got := f.hits("/oauth/token"); got != 2 {
				t.Errorf("token requests: got %d; want 2", got)
			}
		})
	}
}

func TestTokenResponseValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(map[string]any)
		ok     bool
	}{
		{"lower-case dpop", func(m map[string]any) { m["token_type"] = "dpop" }, true},
		{"expires_in as string", func(m map[string]any) { m["expires_in"] = "60" }, true},
		{"no expires_in", func(m map[string]any) { delete(m, "expires_in") }, true},
		{"bearer", func(m map[string]any) { m["token_type"] = "Bearer" }, false},
		{"no token_type", func(m map[string]any) { delete(m, "token_type") }, false},
		{"sub is a handle", func(m map[string]any) { m["sub"] = "alice.test" }, false},
		{"no sub", func(m map[string]any) { delete(m, "sub") }, false},
		{"no atproto scope", func(m map[string]any) { m["scope"] = "transition:generic" }, false},
		{"atproto as prefix only", func(m map[string]any) { m["scope"] = "atproto:x" }, false},
		{"no access token", func(m map[string]any) { delete(m, "access_token") }, false},
		{"expires_in not a number", func(m map[string]any) { m["expires_in"] = "soon" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			resp := validTokenResponse()
			tt.mutate(resp)
			f.handle("/oauth/token", jsonHandler(http.StatusOK, resp))
			c := newTestClient(t, f, newFakeClock())
			g := testGrant(t, c, f)
			_, err := c.ExchangeCode(t.Context(), g, "cod-1", testVerifier)
			if tt.ok {
				if err != nil {
					t.Errorf("ExchangeCode: got %v; want success", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidResponse) {
				t.Errorf("ExchangeCode: got %v; want ErrInvalidResponse", err)
			}
			if _, err := c.Refresh(t.Context(), g, "ref-0"); !errors.Is(err, ErrInvalidResponse) {
				t.Errorf("Refresh: got %v; want ErrInvalidResponse", err)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	f := newFakeServer(t)
	clock := newFakeClock()
	c := newTestClient(t, f, clock, withSigner(mustSigner(t, SigningKey{ID: "k1", Key: mustKey(t)})))
	g := testGrant(t, c, f)

	ts, err := c.Refresh(t.Context(), g, "ref-0")
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if ts.RefreshToken != "ref-1" || ts.AccessToken != "at-1" || ts.ExpiresAt != clock.Now().Add(3599*time.Second) {
		t.Errorf("got %+v; want the rotated tokens", ts)
	}
	form := f.requestsTo("/oauth/token")[0].form
	for k, want := range map[string]string{"grant_type": "refresh_token", "refresh_token": "ref-0", "client_id": testClientID, "client_assertion_type": ClientAssertionType} {
		if got := form.Get(k); got != want {
			t.Errorf("form %s: got %q; want %q", k, got, want)
		}
	}
	if form.Has("code_verifier") || form.Has("redirect_uri") {
		t.Errorf("refresh form %v has code-exchange fields", form)
	}

	resp := validTokenResponse()
	delete(resp, "refresh_token")
	f.handle("/oauth/token", jsonHandler(http.StatusOK, resp))
	ts, err = c.Refresh(t.Context(), g, "ref-0")
	if err != nil {
		t.Fatal(err)
	}
	if ts.RefreshToken != "ref-0" {
		t.Errorf("without rotation: got refresh token %q; want the old ref-0", ts.RefreshToken)
	}
}

func TestRevoke(t *testing.T) {
	f := newFakeServer(t)
	c := newTestClient(t, f, newFakeClock())
	g := testGrant(t, c, f)
	if err := c.Revoke(t.Context(), g, "ref-1"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	r := f.requestsTo("/oauth/revoke")
	if len(r) != 1 {
		t.Fatalf("got %d revoke requests; want 1", len(r))
	}
	if diff := cmp.Diff(url.Values{"token": {"ref-1"}, "client_id": {testClientID}}, r[0].form); diff != "" {
		t.Errorf("revoke form mismatch (-want +got):\n%s", diff)
	}
	verifyDPoP(t, r[0].header.Get("DPoP"), g.DPoPKey)

	f.handle("/oauth/revoke", jsonHandler(http.StatusBadRequest, map[string]string{"error": "unsupported_token_type"}))
	var te *TokenError
	if err := c.Revoke(t.Context(), g, "x"); !errors.As(err, &te) || te.Code != "unsupported_token_type" {
		t.Errorf("got %v; want a *TokenError unsupported_token_type", err)
	}

	g.RevocationEndpoint = ""
	if err := c.Revoke(t.Context(), g, "ref-1"); !errors.Is(err, ErrNoRevocationEndpoint) {
		t.Errorf("without endpoint: got %v; want ErrNoRevocationEndpoint", err)
	}
	if got := f.hits("/oauth/revoke"); got != 2 {
		t.Errorf("revoke requests: got %d; want 2", got)
	}
}

func TestGrantChecked(t *testing.T) {
	f := newFakeServer(t)
	c := newTestClient(t, f, newFakeClock())
	base := testGrant(t, c, f)
	tests := []struct {
		name   string
		mutate func(*Grant)
	}{
		{"no key", func(g *Grant) { g.DPoPKey = nil }},
		{"no issuer", func(g *Grant) { g.Issuer = "" }},
		{"no token endpoint", func(g *Grant) { g.TokenEndpoint = "" }},
		{"token endpoint elsewhere", func(g *Grant) { g.TokenEndpoint = "http://127.0.0.2:1/oauth/token" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := base
			tt.mutate(&g)
			if _, err := c.Refresh(t.Context(), g, "ref-0"); err == nil {
				t.Error("Refresh: got nil error; want an error")
			}
		})
	}
	if got := f.hits("/oauth/token"); got != 0 {
		t.Errorf("token requests: got %d; want 0", got)
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		want         *TokenError
		invalidGrant bool
		transient    bool
	}{
		{
			name:         "invalid_grant",
			handler:      jsonHandler(http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "Refresh token replayed", "error_uri": "https://as.example/e"}),
			want:         &TokenError{StatusCode: 400, Code: "invalid_grant", Description: "Refresh token replayed", URI: "https://as.example/e"},
			invalidGrant: true,
		},
		{
			name:    "invalid_client",
			handler: jsonHandler(http.StatusUnauthorized, map[string]string{"error": "invalid_client"}),
			want:    &TokenError{StatusCode: 401, Code: "invalid_client"},
		},
		{
			name:      "500 with JSON",
			handler:   jsonHandler(http.StatusInternalServerError, map[string]string{"error": "server_error"}),
			want:      &TokenError{StatusCode: 500, Code: "server_error"},
			transient: true,
		},
		{
			name: "502 HTML",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadGateway)
				w.Write([]byte("<html>bad gateway</html>"))
			},
			want:      &TokenError{StatusCode: 502},
			transient: true,
		},
		{
			name:      "429",
			handler:   jsonHandler(http.StatusTooManyRequests, map[string]string{"error": "rate_limited"}),
			want:      &TokenError{StatusCode: 429, Code: "rate_limited"},
			transient: true,
		},
		{
			name:    "400 without body",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) },
			want:    &TokenError{StatusCode: 400},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.handle("/oauth/token", tt.handler)
			c := newTestClient(t, f, newFakeClock())
			_, err := c.Refresh(t.Context(), testGrant(t, c, f), "ref-0")
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("got %v; want a *TokenError", err)
			}
			if diff := cmp.Diff(tt.want, te); diff != "" {
				t.Errorf("TokenError mismatch (-want +got):\n%s", diff)
			}
			if got := IsInvalidGrant(err); got != tt.invalidGrant {
				t.Errorf("IsInvalidGrant: got %v; want %v", got, tt.invalidGrant)
			}
			if got := errors.Is(err, ErrTransient); got != tt.transient {
				t.Errorf("errors.Is(err, ErrTransient): got %v; want %v", got, tt.transient)
			}
			if got := err.Error(); len(got) < 14 || got[:14] != "atauth: oauth:" {
				t.Errorf("Error(): got %q; want the atauth: oauth: prefix", got)
			}
		})
	}
}

func TestTransportErrorsAreTransient(t *testing.T) {
	f := newFakeServer(t)
	c := newTestClient(t, f, newFakeClock())
	g := testGrant(t, c, f)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Refresh(ctx, g, "ref-0")
	if !errors.Is(err, ErrTransient) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v; want ErrTransient and context.Canceled", err)
	}
	if IsInvalidGrant(err) {
		t.Error("cancelled: IsInvalidGrant true; want false")
	}

	f.srv.Close()
	if _, err := c.Refresh(t.Context(), g, "ref-0"); !errors.Is(err, ErrTransient) {
		t.Errorf("server down: got %v; want ErrTransient", err)
	}
}

func TestTokenResponseTooLarge(t *testing.T) {
	f := newFakeServer(t)
	resp := validTokenResponse()
	resp["padding"] = make([]int, maxBodySize/2)
	f.handle("/oauth/token", jsonHandler(http.StatusOK, resp))
	c := newTestClient(t, f, newFakeClock())
	if _, err := c.Refresh(t.Context(), testGrant(t, c, f), "ref-0"); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("got %v; want ErrResponseTooLarge", err)
	}
}

func TestDPoPChallenge(t *testing.T) {
	tests := []struct {
		header string
		want   map[string]string // nil = no DPoP challenge
	}{
		{`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`,
			map[string]string{"error": "use_dpop_nonce", "error_description": "Resource server requires nonce in DPoP proof"}},
		{`DPoP algs="ES256 RS256", error="invalid_token"`, map[string]string{"algs": "ES256 RS256", "error": "invalid_token"}},
		{`Bearer realm="x", DPoP error=invalid_token`, map[string]string{"error": "invalid_token"}},
		{`Bearer realm="x", dpop  ERROR = "use_dpop_nonce"`, map[string]string{"error": "use_dpop_nonce"}},
		{`DPoP error="a \"quoted\" \\ value"`, map[string]string{"error": `a "quoted" \ value`}},
		{`DPoP`, map[string]string{}},
		{`Bearer realm="x"`, nil},
		{`Basic abc==, DPoP error="x"`, map[string]string{"error": "x"}},
		{`Negotiate, DPoP error="x"`, map[string]string{"error": "x"}},
		{``, nil},
		{`DPoP error="unterminated`, map[string]string{"error": "unterminated"}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("WWW-Authenticate", tt.header)
		}
		got, ok := DPoPChallenge(h)
		if ok != (tt.want != nil) {
			t.Errorf("DPoPChallenge(%q): got ok %v; want %v", tt.header, ok, tt.want != nil)
			continue
		}
		if diff := cmp.Diff(tt.want, got); ok && diff != "" {
			t.Errorf("DPoPChallenge(%q) mismatch (-want +got):\n%s", tt.header, diff)
		}
	}
}
