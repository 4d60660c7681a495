package atauth_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/atauth/atauth"
)

func TestOptionalAuth(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	h := app.m.OptionalAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := atauth.SessionFromContext(r.Context()); ok {
			_, _ = io.WriteString(w, s.DID)
			return
		}
		_, _ = io.WriteString(w, "anonymous")
	}))
	for _, tc := range []struct {
		name, header, value, want string
	}{
		{"no credential", "", "", "anonymous"},
		{"a stale cookie", "Cookie", "session_id=" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "anonymous"},
		{"a valid cookie", "Cookie", "session_id=" + b.cookie("session_id"), app.alice.DID},
		{"a valid bearer token", "Authorization", "Bearer " + b.cookie("session_id"), app.alice.DID},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || w.Body.String() != tc.want {
			t.Errorf("%s: got %d %q, want 200 %q", tc.name, w.Code, w.Body, tc.want)
		}
	}
}
