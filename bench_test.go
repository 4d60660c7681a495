package atauth_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/atauth/atauth"
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

// BenchmarkPDSCall measures an authenticated XRPC query through atauth
// against atauthtest: session load, DPoP proof, the HTTP round trip on
// loopback and the server's DPoP and token checks.
func BenchmarkPDSCall(b *testing.B) {
	id := signedInSession(b)
	m := id.app.m
	s, err := m.SessionByID(context.Background(), id.value)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := getSession(ctx, m, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefreshStorm measures the time for 1,000 concurrent PDS calls,
// across 4 Managers sharing one memstore, on a session whose access token
// has just expired: one refresh, then 1,000 calls.
func BenchmarkRefreshStorm(b *testing.B) {
	id := signedInSession(b)
	app := id.app
	ctx := context.Background()
	managers := make([]*atauth.Manager, 4)
	for i := range managers {
		cfg := app.cfg
		cfg.Store = app.store.Share()
		m, err := atauth.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		managers[i] = m
	}
	for b.Loop() {
		before := app.net.Stats().Refresh
		if err := managers[0].MarkAccessTokenExpired(ctx, app.session(managers[0], id.value)); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := range 1000 {
			m := managers[i%len(managers)]
			wg.Go(func() {
				s, err := m.SessionByID(ctx, id.value)
				if err == nil {
					_, err = getSession(ctx, m, s)
				}
				if err != nil {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if n := app.net.Stats().Refresh - before; n != 1 || failed.Load() != 0 {
			b.Fatalf("storm: %d refreshes, %d failed calls; want 1 and 0", n, failed.Load())
		}
	}
}
