package atauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/atauth/atauth"
)

var callbackCodes = []string{
	atauth.CodeAccessDenied, atauth.CodeExpired, atauth.CodeBrowserMismatch,
	atauth.CodeIssuerMismatch, atauth.CodeAccountMismatch, atauth.CodeServerError,
}

// FuzzHandleCallback feeds arbitrary callback queries and flow cookies: every
// one must fail with a code from the closed set, never panic.
func FuzzHandleCallback(f *testing.F) {
	f.Add("state=abc&code=def&iss=https://as.example", "cookie")
	f.Add("error=access_denied&state="+string(make([]byte, 43)), "")
	f.Add("state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&iss=x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	m, err := atauth.New(validConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rawQuery, cookie string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return
		}
		res, err := m.HandleCallback(context.Background(), q, cookie)
		var ce *atauth.CallbackError
		if res != nil || !errors.As(err, &ce) {
			t.Fatalf("HandleCallback(%q): got %v, %v; want a *CallbackError", rawQuery, res, err)
		}
		if !slices.Contains(callbackCodes, ce.Code) {
			t.Fatalf("code %q is outside the closed set", ce.Code)
		}
	})
}

// FuzzAuthenticate feeds arbitrary Authorization and Cookie headers: the
// answer is always "no credential" or "invalid session", never a panic.
func FuzzAuthenticate(f *testing.F) {
	f.Add("Bearer abc", "session_id=abc")
	f.Add("", "a=b; session_id=\"quoted\"; c")
	f.Add("bearer", ";;;=;")
	m, err := atauth.New(validConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, authorization, cookie string) {
		req, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		s, err := m.Authenticate(req)
		if s != nil || !(errors.Is(err, atauth.ErrNoCredential) || errors.Is(err, atauth.ErrInvalidSession)) {
			t.Fatalf("Authenticate(%q, %q): got %v, %v", authorization, cookie, s, err)
		}
	})
}

// FuzzJSONBodies posts arbitrary bodies to every endpoint that takes one,
// as a signed-in browser: the answer is never a server error, and no
// session is created, changed or ended.
func FuzzJSONBodies(f *testing.F) {
	paths := []string{"/auth/exchange", "/auth/switch-account", "/auth/add-account/start", "/auth/developer-token/start", "/auth/scope-upgrade/start"}
	for i := range paths {
		for _, body := range []string{`{}`, `{"exchange_token":"x"}`, `{"target_did":"did:plc:x"}`, `{"handle":"nobody.test"}`,
			`{"name":"` + strings.Repeat("n", 101) + `","expires_in_days":-1}`, `{"scopes":["repo:*"]}`, `[]`, `null`, `{"a":` + strings.Repeat("[", 100)} {
			f.Add(uint8(i), body)
		}
	}
	app := newTestApp(f, func(c *atauth.Config) { c.RateLimiter = atauth.NoRateLimit })
	b := app.newBrowser()
	b.login(app.alice)
	before, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		path := paths[int(which)%len(paths)]
		bt := *b
		bt.t = t
		resp := bt.fetch("POST", path, body)
		if resp.status >= 500 && resp.status != http.StatusServiceUnavailable {
			t.Fatalf("POST %s %q: got %d %s", path, body, resp.status, resp.body)
		}
		after, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
		if len(after) != len(before) || after[0].Version != before[0].Version {
			t.Fatalf("POST %s %q changed the sessions", path, body)
		}
	})
}
