package atauth_test

import (
	"net/http"
	"testing"
)

// BenchmarkAuthenticate measures the per-request cost of turning a session
// cookie into a session, on memstore.
func BenchmarkAuthenticate(b *testing.B) {
	id := signedInSession(b)
	m := id.app.m
	req, _ := http.NewRequest("GET", "http://127.0.0.1/api", nil)
	req.Header.Set("Cookie", "theme=dark; session_id="+id.value+"; lang=en")
	b.ReportAllocs()
	for b.Loop() {
		s, err := m.Authenticate(req)
		if err != nil || s.DID == "" {
			b.Fatalf("Authenticate: %v", err)
		}
	}
}

// BenchmarkRequireAuth measures the middleware: authentication plus the
// session in the request's context.
func BenchmarkRequireAuth(b *testing.B) {
	id := signedInSession(b)
	h := id.app.m.RequireAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req, _ := http.NewRequest("GET", "http://127.0.0.1/api", nil)
	req.Header.Set("Authorization", "Bearer "+id.value)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

type signedIn struct {
	app   *testApp
	value string
}

// signedInSession signs alice in through the whole flow and returns her
// session id.
func signedInSession(tb testing.TB) signedIn {
	tb.Helper()
	app := newTestApp(tb)
	b := app.newBrowser()
	b.login(app.alice)
	return signedIn{app: app, value: b.cookie("session_id")}
}
