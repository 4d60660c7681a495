package atauth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

// aliceSignedIn signs alice in through a browser and returns the app, the
// browser and her session.
func aliceSignedIn(t *testing.T, opts ...appOption) (*testApp, *browser, *atauth.Session) {
	t.Helper()
	app := newTestApp(t, opts...)
	b := app.newBrowser()
	b.login(app.alice)
	return app, b, app.session(app.m, b.cookie("session_id"))
}

// session returns the Manager's session for a credential.
func (app *testApp) session(m *atauth.Manager, id string) *atauth.Session {
	app.t.Helper()
	s, err := m.SessionByID(context.Background(), id)
	if err != nil {
		app.t.Fatalf("SessionByID: %v", err)
	}
	return s
}

type getSessionOut struct {
	DID    string `json:"did"`
	Handle string `json:"handle"`
}

func getSession(ctx context.Context, m *atauth.Manager, s *atauth.Session) (getSessionOut, error) {
	var out getSessionOut
	err := m.PDSClient(s).Query(ctx, "com.atproto.server.getSession", nil, &out)
	return out, err
}

// pdsRequests counts the Manager's requests to the PDS's XRPC endpoints.
func (app *testApp) pdsRequests(urls []string) int {
	n := 0
	for _, u := range urls {
		if strings.Contains(u, app.net.PDSURL()+"/xrpc/com.atproto.server.getSession") || strings.Contains(u, "/xrpc/com.atproto.repo.") {
			n++
		}
	}
	return n
}

func TestPDSCall(t *testing.T) {
	app, b, s := aliceSignedIn(t)
	ctx := context.Background()

	app.out.reset()
	out, err := getSession(ctx, app.m, s)
	if err != nil {
		t.Fatalf("getSession: %v", err)
	}
	if out.DID != app.alice.DID || out.Handle != "alice.test" {
		t.Errorf("getSession: got %+v, want alice", out)
	}
	first := app.pdsRequests(app.out.reset())
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatal(err)
	}
	if got := app.pdsRequests(app.out.reset()); got != 1 {
		t.Errorf("second call: got %d PDS requests, want 1 (nonce cached; first took %d)", got, first)
	}

	// After a nonce rotation one extra round trip, not more.
	app.net.ForceNonceChallenge()
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatal(err)
	}
	if got := app.pdsRequests(app.out.reset()); got != 2 {
		t.Errorf("call after a nonce rotation: got %d PDS requests, want 2", got)
	}

	// A new Manager on the same Store starts with the persisted nonce.
	m2, err := atauth.New(app.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(ctx, m2, app.session(m2, b.cookie("session_id"))); err != nil {
		t.Fatal(err)
	}
	if got := app.pdsRequests(app.out.reset()); got != 1 {
		t.Errorf("first call of a new Manager: got %d PDS requests, want 1 (persisted nonce)", got)
	}
	if got := app.net.Stats().Refresh; got != 0 {
		t.Errorf("refreshes: got %d, want 0", got)
	}
}

func TestPDSProcedureResendsBodyAfterNonceChallenge(t *testing.T) {
	app, _, s := aliceSignedIn(t)
	ctx := context.Background()
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatal(err)
	}
	app.net.ForceNonceChallenge()
	in := map[string]any{"repo": app.alice.DID, "collection": "app.bsky.feed.post", "record": map[string]string{"text": "hello"}}
	var out struct{ URI string }
	if err := app.m.PDSClient(s).Procedure(ctx, "com.atproto.repo.createRecord", in, &out); err != nil {
		t.Fatalf("createRecord after a nonce challenge: %v", err)
	}
	if !strings.HasPrefix(out.URI, "at://"+app.alice.DID+"/app.bsky.feed.post/") {
		t.Errorf("createRecord: got uri %q, want one in alice's app.bsky.feed.post", out.URI)
	}
}

func TestPDSClientStaysOnThePDS(t *testing.T) {
	app, _, s := aliceSignedIn(t)
	_, err := app.m.PDSClient(s).HTTPClient().Get(app.net.IssuerURL() + "/xrpc/com.atproto.server.getSession")
	if !errors.Is(err, atauth.ErrInvalidInput) {
		t.Errorf("request to another origin: got %v, want ErrInvalidInput", err)
	}
	pds, err := app.m.PDSClient(s).PDS(context.Background())
	if err != nil || pds != app.net.PDSURL() {
		t.Errorf("PDS: got %q, %v; want %q", pds, err, app.net.PDSURL())
	}
	resp, err := app.m.PDSClient(s).HTTPClient().Get(pds + "/xrpc/com.atproto.server.getSession")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPClient GET: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestRefreshProactiveAndReactive(t *testing.T) {
	app, b, s := aliceSignedIn(t)
	ctx := context.Background()

	if err := app.m.MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatalf("call after marking expired: %v", err)
	}
	if got := app.net.Stats().Refresh; got != 1 {
		t.Errorf("proactive refresh: got %d refreshes, want 1", got)
	}
	// The PDS refuses the token before its recorded expiry.
	app.net.ExpireAccessTokens(app.alice.DID)
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatalf("call after the server expired the token: %v", err)
	}
	if got := app.net.Stats().Refresh; got != 2 {
		t.Errorf("reactive refresh: got %d refreshes, want 2", got)
	}
	if got := b.me()["scopes"]; got == nil {
		t.Error("scopes lost after refresh")
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
		t.Errorf("grants: got %d, want 1", got)
	}
}

// TestRefreshStorm: four Managers share one Store; 1,000 concurrent PDS
// calls hit a session whose access token just expired, with an
// authorization server that kills the grant on refresh-token reuse.
func TestRefreshStorm(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	id := b.cookie("session_id")
	ctx := context.Background()

	managers := make([]*atauth.Manager, 4)
	for i := range managers {
		cfg := app.cfg
		cfg.Store = app.store.Share()
		m, err := atauth.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		managers[i] = m
	}
	if err := managers[0].MarkAccessTokenExpired(ctx, app.session(managers[0], id)); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 1000 {
		m := managers[i%len(managers)]
		wg.Go(func() {
			<-start
			s, err := m.SessionByID(ctx, id)
			if err == nil {
				_, err = getSession(ctx, m, s)
			}
			if err != nil {
				if failed.Add(1) == 1 {
					t.Errorf("a call failed: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := app.net.Stats().Refresh; got != 1 {
		t.Errorf("refreshes at the authorization server: got %d, want exactly 1", got)
	}
	if got := failed.Load(); got != 0 {
		t.Errorf("failed calls: got %d, want 0", got)
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
		t.Errorf("grants after the storm: got %d, want 1", got)
	}
}

func TestRefreshSurvivesAServerError(t *testing.T) {
	app, b, s := aliceSignedIn(t)
	ctx := context.Background()
	if err := app.m.MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatal(err)
	}
	app.net.FailNext(1)
	if _, err := getSession(ctx, app.m, s); !errors.Is(err, atauth.ErrUpstream) {
		t.Errorf("call while the refresh fails with 503: got %v, want ErrUpstream", err)
	}
	if resp := b.fetch("GET", "/auth/me", ""); resp.status != http.StatusOK {
		t.Errorf("session after a failed refresh: got %d, want 200", resp.status)
	}
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Errorf("next call: %v", err)
	}
	if got := app.net.Stats().Refresh; got != 1 {
		t.Errorf("refreshes: got %d, want 1", got)
	}
}

// spendStoredRefreshToken leaves the Store holding a refresh token the
// authorization server has already rotated: what a lost refresh response,
// or plyr's stale-cache race (W6), leaves behind.
func spendStoredRefreshToken(t *testing.T, app *testApp, s *atauth.Session) {
	t.Helper()
	ctx := context.Background()
	recs, _ := app.store.ListSessionsByDID(ctx, s.DID, s.Kind)
	old := recs[0]
	if err := app.m.MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatal(err)
	}
	recs, _ = app.store.ListSessionsByDID(ctx, s.DID, s.Kind)
	restored := old
	restored.Version = recs[0].Version
	if err := app.store.UpdateSession(ctx, restored); err != nil {
		t.Fatal(err)
	}
	if err := app.m.MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidGrantEndsTheSession(t *testing.T) {
	var expired atomic.Int64
	app := newTestApp(t, func(c *atauth.Config) {
		c.OnEvent = func(_ context.Context, e atauth.Event) {
			if e.Type == atauth.EventSessionExpired {
				expired.Add(1)
			}
		}
	})
	b := app.newBrowser()
	b.login(app.alice)
	s := app.session(app.m, b.cookie("session_id"))
	spendStoredRefreshToken(t, app, s)

	if _, err := getSession(context.Background(), app.m, s); !errors.Is(err, atauth.ErrSessionExpired) {
		t.Errorf("call with a dead grant: got %v, want ErrSessionExpired", err)
	}
	if got := app.sessionsOf(app.alice.DID); got != 0 {
		t.Errorf("sessions: got %d, want 0", got)
	}
	if got := expired.Load(); got != 1 {
		t.Errorf("session_expired events: got %d, want 1", got)
	}
	resp := b.fetch("GET", "/auth/me", "")
	if resp.status != http.StatusUnauthorized {
		t.Errorf("/auth/me after the grant died: got %d, want 401", resp.status)
	}
}

func TestSpentRefreshTokenWithinGrace(t *testing.T) {
	app := newTestApp(t)
	app.net.SetRefreshGrace(time.Minute)
	b := app.newBrowser()
	b.login(app.alice)
	s := app.session(app.m, b.cookie("session_id"))
	spendStoredRefreshToken(t, app, s)
	if _, err := getSession(context.Background(), app.m, s); err != nil {
		t.Errorf("call with a spent refresh token inside the server's grace window: %v", err)
	}
	if got := app.sessionsOf(app.alice.DID); got != 1 {
		t.Errorf("sessions: got %d, want 1", got)
	}
}

func TestDeveloperTokenCallsThePDS(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	token := b.mintDeveloperToken(app.alice, `{}`)
	s := app.session(app.m, token)
	if out, err := getSession(context.Background(), app.m, s); err != nil || out.DID != app.alice.DID {
		t.Errorf("developer token's PDS call: got %+v, %v", out, err)
	}
}

func TestLogoutDuringUseEndsPDSAccess(t *testing.T) {
	app, b, s := aliceSignedIn(t)
	b.fetch("POST", "/auth/logout", "")
	if _, err := getSession(context.Background(), app.m, s); !errors.Is(err, atauth.ErrSessionExpired) {
		t.Errorf("PDS call after logout: got %v, want ErrSessionExpired", err)
	}
}

// TestFollowsPDSMigration: the account moves to another PDS behind the same
// authorization server; the next call finds it there instead of failing
// forever.
func TestFollowsPDSMigration(t *testing.T) {
	app, _, s := aliceSignedIn(t)
	ctx := context.Background()
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatal(err)
	}
	newPDS, err := app.net.AddPDS()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.net.MoveAccount(app.alice.DID, newPDS); err != nil {
		t.Fatal(err)
	}
	out, err := getSession(ctx, app.m, s)
	if err != nil || out.DID != app.alice.DID {
		t.Fatalf("call after the account moved: got %+v, %v", out, err)
	}
	if pds, _ := app.m.PDSClient(s).PDS(ctx); pds != newPDS {
		t.Errorf("the session's PDS: got %q, want %q", pds, newPDS)
	}
	if got := app.net.Stats().Refresh; got != 1 {
		t.Errorf("refreshes: got %d, want 1 (a token for the new PDS)", got)
	}
	// Later calls go straight to the new PDS.
	app.out.reset()
	if _, err := getSession(ctx, app.m, s); err != nil {
		t.Fatal(err)
	}
	for _, u := range app.out.reset() {
		if strings.Contains(u, app.net.PDSURL()) {
			t.Errorf("a call after the move still went to the old PDS: %s", u)
		}
	}
}
