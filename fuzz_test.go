package atauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
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
