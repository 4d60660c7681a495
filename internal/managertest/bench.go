package managertest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

// SignedIn starts a network with the account alice.test, makes a Manager on
// store, and signs alice in through it. It returns the Manager and alice's
// session id.
func SignedIn(tb testing.TB, store atauth.Store) (*atauth.Manager, string) {
	tb.Helper()
	network, accts := NewNetwork(tb, "alice.test")
	m := NewManager(tb, network, store)
	return m, SignIn(tb, m, network, accts[0])
}

// CookieRequest returns a GET request carrying sessionID in the session
// cookie, among other cookies, as a browser sends it.
func CookieRequest(sessionID string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api", nil)
	req.Header.Set("Cookie", "theme=dark; session_id="+sessionID+"; lang=en")
	return req
}

// CompareAuthenticate runs three sub-benchmarks on one session of m:
// BareRead, bareRead of the session's Store key (the driver's own read of
// the same row or key, the floor); Authenticate, m.Authenticate of a
// request carrying the session cookie; and Ratio, which alternates the two
// and reports Authenticate's time as a multiple of BareRead's, "x-bare", so
// that a machine's changing load weighs on both alike. If roundTrips is
// not nil it counts the requests sent to the backend, and BareRead and
// Authenticate report them per operation as "roundtrips/op".
func CompareAuthenticate(b *testing.B, m *atauth.Manager, sessionID string, bareRead func(ctx context.Context, storeKey string) error, roundTrips func() int64) {
	ctx := context.Background()
	key := StoreKey(sessionID)
	req := CookieRequest(sessionID)
	bare := func(b *testing.B) {
		if err := bareRead(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
	auth := func(b *testing.B) {
		s, err := m.Authenticate(req)
		if err != nil || s.DID == "" {
			b.Fatalf("Authenticate: %v", err)
		}
	}
	counted := func(op func(*testing.B)) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			var start int64
			if roundTrips != nil {
				start = roundTrips()
			}
			for b.Loop() {
				op(b)
			}
			if roundTrips != nil {
				b.ReportMetric(float64(roundTrips()-start)/float64(b.N), "roundtrips/op")
			}
		}
	}
	b.Run("BareRead", counted(bare))
	b.Run("Authenticate", counted(auth))
	b.Run("Ratio", func(b *testing.B) {
		var tb, ta time.Duration
		for b.Loop() {
			t0 := time.Now()
			bare(b)
			t1 := time.Now()
			auth(b)
			tb += t1.Sub(t0)
			ta += time.Since(t1)
		}
		b.ReportMetric(float64(ta)/float64(tb), "x-bare")
		b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), "bare-ns")
		b.ReportMetric(float64(ta.Nanoseconds())/float64(b.N), "auth-ns")
	})
}
