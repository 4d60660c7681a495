package oauthclient

import (
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func testAuthRequest(t *testing.T, c *Client, f *fakeServer) AuthRequest {
	t.Helper()
	m, err := c.AuthServerMetadata(t.Context(), f.issuer)
	if err != nil {
		t.Fatalf("AuthServerMetadata: %v", err)
	}
	return AuthRequest{
		Metadata:  m,
		Scopes:    []string{"atproto", "transition:generic"},
		LoginHint: "alice.test",
		Prompt:    "create",
		State:     "state-123",
		Verifier:  testVerifier,
		DPoPKey:   mustKey(t),
	}
}

func TestPushAuthorizationConfidential(t *testing.T) {
	f := newFakeServer(t)
	clock := newFakeClock()
	sk := mustKey(t)
	c := newTestClient(t, f, clock, withSigner(mustSigner(t, SigningKey{ID: "key-1", Key: sk})))
	c.UserAgent = "atauth-test"
	req := testAuthRequest(t, c, f)

	start, err := c.PushAuthorization(t.Context(), req)
	if err != nil {
		t.Fatalf("PushAuthorization: %v", err)
	}

	wantAuthURL := f.issuer + "/oauth/authorize?" + url.Values{
		"client_id":   {testClientID},
		"request_uri": {testRequestURI},
	}.Encode()
	if diff := cmp.Diff(&AuthStart{AuthURL: wantAuthURL, RequestURI: testRequestURI, ExpiresIn: 299}, start); diff != "" {
		t.Errorf("AuthStart mismatch (-want +got):\n%s", diff)
	}

	reqs := f.requestsTo("/oauth/par")
	if len(reqs) != 1 {
		t.Fatalf("got %d PAR requests; want 1", len(reqs))
	}
	r := reqs[0]
	if got := r.header.Get("User-Agent"); got != "atauth-test" {
		t.Errorf("User-Agent: got %q; want atauth-test", got)
	}
	form := r.form
	assertion := form.Get("client_assertion")
	form.Del("client_assertion")
	want := url.Values{
		"client_id":             {testClientID},
		"response_type":         {"code"},
		"redirect_uri":          {testRedirectURI},
		"scope":                 {"atproto transition:generic"},
		"state":                 {"state-123"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, // RFC 7636 appendix B
		"code_challenge_method": {"S256"},
		"login_hint":            {"alice.test"},
		"prompt":                {"create"},
		"client_assertion_type": {ClientAssertionType},
	}
	if diff := cmp.Diff(want, form); diff != "" {
		t.Errorf("PAR form mismatch (-want +got):\n%s", diff)
	}
	if got := oauth2.S256ChallengeFromVerifier(testVerifier); got != want.Get("code_challenge") {
		t.Errorf("S256ChallengeFromVerifier: got %q; want %q", got, want.Get("code_challenge"))
	}

	h, claims := verifyJWS(t, assertion, &sk.PublicKey)
	if h.KeyID() != "key-1" || h.Type() != "JWT" || h.Algorithm().String() != "ES256" {
		t.Errorf("assertion header: got kid %q typ %q alg %q; want key-1 JWT ES256", h.KeyID(), h.Type(), h.Algorithm())
	}
	now := float64(clock.Now().Unix())
	for k, v := range map[string]any{"iss": testClientID, "sub": testClientID, "aud": f.issuer, "iat": now, "exp": now + 60} {
		if claims[k] != v {
			t.Errorf("assertion claim %s: got %v; want %v", k, claims[k], v)
		}
	}
	if jti, _ := claims["jti"].(string); len(jti) < 16 {
		t.Errorf("assertion jti: got %q; want a random string", jti)
	}

	dpop := verifyDPoP(t, r.header.Get("DPoP"), req.DPoPKey)
	for k, v := range map[string]any{"htm": "POST", "htu": f.issuer + "/oauth/par", "iat": now} {
		if dpop[k] != v {
			t.Errorf("DPoP claim %s: got %v; want %v", k, dpop[k], v)
		}
	}
	for _, k := range []string{"nonce", "ath"} {
		if _, ok := dpop[k]; ok {
			t.Errorf("DPoP claim %s present; want absent", k)
		}
	}
}

func TestPushAuthorizationPublic(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/oauth/par", jsonHandler(http.StatusOK, map[string]any{"request_uri": testRequestURI}))
	c := newTestClient(t, f, newFakeClock())
	req := testAuthRequest(t, c, f)
	req.LoginHint, req.Prompt = "", ""
	if _, err := c.PushAuthorization(t.Context(), req); err != nil {
		t.Fatalf("PushAuthorization: %v", err)
	}
	form := f.requestsTo("/oauth/par")[0].form
	for _, k := range []string{"client_assertion", "client_assertion_type", "login_hint", "prompt"} {
		if form.Has(k) {
			t.Errorf("public PAR form has %s=%q; want absent", k, form.Get(k))
		}
	}
	if got := form.Get("client_id"); got != testClientID {
		t.Errorf("client_id: got %q; want %q", got, testClientID)
	}
}

func TestPushAuthorizationKeepsEndpointQuery(t *testing.T) {
	f := newFakeServer(t)
	m := validMetadata(f.issuer)
	m["authorization_endpoint"] = f.issuer + "/oauth/authorize?tenant=a"
	f.handle("/.well-known/oauth-authorization-server", jsonHandler(http.StatusOK, m))
	c := newTestClient(t, f, newFakeClock())
	start, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(start.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"tenant": {"a"}, "client_id": {testClientID}, "request_uri": {testRequestURI}}
	if diff := cmp.Diff(want, u.Query()); diff != "" {
		t.Errorf("AuthURL query mismatch (-want +got):\n%s", diff)
	}
}

func TestPushAuthorizationRejectsBadRequests(t *testing.T) {
	f := newFakeServer(t)
	c := newTestClient(t, f, newFakeClock())
	base := testAuthRequest(t, c, f)
	tests := []struct {
		name   string
		mutate func(*AuthRequest)
		wantIs error
	}{
		{"unsupported prompt", func(r *AuthRequest) { r.Prompt = "bogus" }, ErrPromptUnsupported},
		{"prompt not advertised", func(r *AuthRequest) {
			m := *r.Metadata
			m.PromptValuesSupported = nil
			r.Metadata = &m
		}, ErrPromptUnsupported},
		{"no metadata", func(r *AuthRequest) { r.Metadata = nil }, nil},
		{"no atproto scope", func(r *AuthRequest) { r.Scopes = []string{"transition:generic"} }, nil},
		{"no state", func(r *AuthRequest) { r.State = "" }, nil},
		{"short verifier", func(r *AuthRequest) { r.Verifier = "abc" }, nil},
		{"verifier with bad characters", func(r *AuthRequest) { r.Verifier = testVerifier[:42] + "+" }, nil},
		{"no DPoP key", func(r *AuthRequest) { r.DPoPKey = nil }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base
			tt.mutate(&req)
			_, err := c.PushAuthorization(t.Context(), req)
			if err == nil {
				t.Fatal("got nil error; want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v; want %v", err, tt.wantIs)
			}
		})
	}
	if got := f.hits("/oauth/par"); got != 0 {
		t.Errorf("PAR requests: got %d; want 0", got)
	}
}

func TestPushAuthorizationInvalidResponse(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/oauth/par", jsonHandler(http.StatusCreated, map[string]any{"expires_in": 60}))
	c := newTestClient(t, f, newFakeClock())
	if _, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f)); !errors.Is(err, ErrInvalidResponse) {
		t.Errorf("got %v; want ErrInvalidResponse", err)
	}
}

// nonceChallenge answers requests without the wanted nonce with a
// use_dpop_nonce challenge in the given shape, and others with ok.
func nonceChallenge(t *testing.T, shape string, nonce string, ok http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		claims := proofClaims(t, r.Header.Get("DPoP"))
		w.Header().Set("DPoP-Nonce", nonce)
		if claims["nonce"] == nonce {
			ok(w, r)
			return
		}
		switch shape {
		case "400 JSON":
			jsonHandler(http.StatusBadRequest, map[string]string{"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"})(w, r)
		case "401 WWW-Authenticate":
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
			w.WriteHeader(http.StatusUnauthorized)
		default:
			t.Errorf("unknown shape %q", shape)
		}
	}
}

func TestNonceChallengeRetriedOnce(t *testing.T) {
	for _, shape := range []string{"400 JSON", "401 WWW-Authenticate"} {
		t.Run(shape, func(t *testing.T) {
			f := newFakeServer(t)
			f.handle("/oauth/par", nonceChallenge(t, shape, "nonce-1", jsonHandler(http.StatusCreated, map[string]any{"request_uri": testRequestURI})))
			c := newTestClient(t, f, newFakeClock())
			if _, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f)); err != nil {
				t.Fatalf("PushAuthorization: %v", err)
			}
			reqs := f.requestsTo("/oauth/par")
			if len(reqs) != 2 {
				t.Fatalf("got %d PAR requests; want 2", len(reqs))
			}
			if got := proofClaims(t, reqs[1].header.Get("DPoP"))["nonce"]; got != "nonce-1" {
				t.Errorf("retry nonce: got %v; want nonce-1", got)
			}
			origin, _ := Origin(f.issuer)
			if got := c.Nonces.Get(origin); got != "nonce-1" {
				t.Errorf("cached nonce: got %q; want nonce-1", got)
			}

			// The next call starts with the cached nonce.
			if _, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f)); err != nil {
				t.Fatalf("second PushAuthorization: %v", err)
			}
			if got := f.hits("/oauth/par"); got != 3 {
				t.Errorf("PAR requests after second call: got %d; want 3", got)
			}
		})
	}
}

func TestSecondNonceChallengeFails(t *testing.T) {
	for _, shape := range []string{"400 JSON", "401 WWW-Authenticate"} {
		t.Run(shape, func(t *testing.T) {
			f := newFakeServer(t)
			n := 0
			f.handle("/oauth/par", func(w http.ResponseWriter, r *http.Request) {
				// A fresh nonce every time, so no proof is ever current.
				n++
				nonceChallenge(t, shape, "nonce-"+string(rune('a'+n)), nil)(w, r)
			})
			c := newTestClient(t, f, newFakeClock())
			_, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f))
			var te *TokenError
			if !errors.As(err, &te) || te.Code != "use_dpop_nonce" {
				t.Fatalf("got %v; want a *TokenError use_dpop_nonce", err)
			}
			if got := f.hits("/oauth/par"); got != 2 {
				t.Errorf("PAR requests: got %d; want 2", got)
			}
		})
	}
}

func TestNonceChallengeWithoutNonceNotRetried(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/oauth/par", jsonHandler(http.StatusBadRequest, map[string]string{"error": "use_dpop_nonce"}))
	c := newTestClient(t, f, newFakeClock())
	if _, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f)); err == nil {
		t.Fatal("got nil error; want an error")
	}
	if got := f.hits("/oauth/par"); got != 1 {
		t.Errorf("PAR requests: got %d; want 1", got)
	}
}

func TestNonceStoredFromSuccess(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/oauth/par", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DPoP-Nonce", "fresh")
		jsonHandler(http.StatusCreated, map[string]any{"request_uri": testRequestURI})(w, r)
	})
	c := newTestClient(t, f, newFakeClock())
	if _, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f)); err != nil {
		t.Fatal(err)
	}
	origin, _ := Origin(f.issuer)
	if got := c.Nonces.Get(origin); got != "fresh" {
		t.Errorf("cached nonce: got %q; want fresh", got)
	}
}

func TestAssertionFreshPerAttempt(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/oauth/par", nonceChallenge(t, "400 JSON", "n", jsonHandler(http.StatusCreated, map[string]any{"request_uri": testRequestURI})))
	clock := newFakeClock()
	c := newTestClient(t, f, clock, withSigner(mustSigner(t, SigningKey{ID: "k", Key: mustKey(t), NotBefore: clock.Now().Add(-time.Hour)})))
	if _, err := c.PushAuthorization(t.Context(), testAuthRequest(t, c, f)); err != nil {
		t.Fatal(err)
	}
	reqs := f.requestsTo("/oauth/par")
	if len(reqs) != 2 {
		t.Fatalf("got %d requests; want 2", len(reqs))
	}
	if a, b := reqs[0].form.Get("client_assertion"), reqs[1].form.Get("client_assertion"); a == b {
		t.Error("retry reused the client assertion; want a fresh jti")
	}
}

// TestConcurrentUse runs the whole client from many goroutines; it finds
// data races under -race.
func TestConcurrentUse(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/oauth/par", nonceChallenge(t, "400 JSON", "n", jsonHandler(http.StatusCreated, map[string]any{"request_uri": testRequestURI})))
	c := newTestClient(t, f, newFakeClock(), withSigner(mustSigner(t, SigningKey{ID: "k", Key: mustKey(t)})))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			m, err := c.ResolveEntry(t.Context(), f.issuer)
			if err != nil {
				errs <- err
				return
			}
			req := AuthRequest{Metadata: m, Scopes: []string{"atproto"}, State: "s", Verifier: testVerifier, DPoPKey: mustKey(t)}
			if _, err := c.PushAuthorization(t.Context(), req); err != nil {
				errs <- err
				return
			}
			if _, err := c.Refresh(t.Context(), m.Grant(req.DPoPKey), "ref-0"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
