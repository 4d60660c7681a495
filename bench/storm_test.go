package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
)

const (
	stormInstances = 4    // Managers or ClientApps, as instances of one application
	stormCalls     = 1000 // concurrent PDS calls
)

// stormResult is what one storm did.
type stormResult struct {
	refreshes, failed, grantsLost int64
}

// reportStorm reports the totals of b.N storms per storm.
func reportStorm(b *testing.B, total stormResult) {
	n := float64(b.N)
	b.ReportMetric(float64(total.refreshes)/n, "refreshes/op")
	b.ReportMetric(float64(total.failed)/n, "failed/op")
	b.ReportMetric(float64(total.grantsLost)/n, "grants-lost/op")
}

// storm runs call stormCalls times at once, call i on instance
// i%stormInstances, and counts the failures.
func storm(call func(ctx context.Context, instance int) error) int64 {
	ctx := context.Background()
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range stormCalls {
		wg.Go(func() {
			<-start
			if call(ctx, i%stormInstances) != nil {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return failed.Load()
}

func atauthGetSession(ctx context.Context, m *atauth.Manager, id string) error {
	s, err := m.SessionByID(ctx, id)
	if err != nil {
		return err
	}
	var out struct {
		DID string `json:"did"`
	}
	return m.PDSClient(s).Query(ctx, "com.atproto.server.getSession", nil, &out)
}

// BenchmarkRefreshStorm signs alice in, lets the PDS expire her access
// token (the client is not told: it learns from the PDS's 401
// invalid_token), and makes 1,000 concurrent getSession calls spread over
// 4 instances sharing one store, against an authorization server that ends
// the whole grant when a refresh token is used twice. Each op is one storm
// on a fresh sign-in; the sign-in and a first call (which learns the PDS's
// DPoP nonce) are outside the timer.
//
// atauth-atauthtest/<store> runs 4 Managers, each with a Store handle of
// its own on one backend. atauth-fake and indigo-fake run against fakeNet:
// 4 Managers on memstore, and 4 ClientApps sharing one oauth.MemStore (the
// best case for indigo: one store, as a shared database would be), each
// request resuming the session with ResumeSession, as indigo's
// documentation and demo do.
func BenchmarkRefreshStorm(b *testing.B) {
	for _, be := range backends() {
		b.Run("atauth-atauthtest/"+be.name, func(b *testing.B) {
			network, alice := newAccount(b)
			var ms []*atauth.Manager
			for _, s := range be.open(b, stormInstances) {
				ms = append(ms, newManager(b, testConfig(network, s, loopbackClient(b))))
			}
			var total stormResult
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				id := signIn(b, ms[0], alice.Handle, approveAt(network, alice))
				if err := atauthGetSession(context.Background(), ms[0], id); err != nil {
					b.Fatal(err)
				}
				network.ExpireAccessTokens(alice.DID)
				grants, refreshes := network.ActiveGrants(alice.DID), network.Stats().Refresh
				b.StartTimer()
				total.failed += storm(func(ctx context.Context, i int) error { return atauthGetSession(ctx, ms[i], id) })
				b.StopTimer()
				total.refreshes += int64(network.Stats().Refresh - refreshes)
				total.grantsLost += int64(grants - network.ActiveGrants(alice.DID))
				b.StartTimer()
			}
			reportStorm(b, total)
		})
	}
	b.Run("atauth-fake/memstore", func(b *testing.B) {
		f := newFakeNet(b)
		s := memstore.New()
		var ms []*atauth.Manager
		for i := range stormInstances {
			st := s
			if i > 0 {
				st = s.Share()
			}
			ms = append(ms, newManager(b, fakeConfig(st, f.newClient(b))))
		}
		var total stormResult
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			id := signIn(b, ms[0], fakeHandle, approveFake(f))
			if err := atauthGetSession(context.Background(), ms[0], id); err != nil {
				b.Fatal(err)
			}
			f.ExpireAccessTokens()
			grants, refreshes := f.LiveGrants(), f.refreshes.Load()
			b.StartTimer()
			total.failed += storm(func(ctx context.Context, i int) error { return atauthGetSession(ctx, ms[i], id) })
			b.StopTimer()
			total.refreshes += f.refreshes.Load() - refreshes
			total.grantsLost += int64(grants - f.LiveGrants())
			b.StartTimer()
		}
		reportStorm(b, total)
	})
	b.Run("indigo-fake/MemStore", func(b *testing.B) {
		f := newFakeNet(b)
		store := oauth.NewMemStore()
		var apps []*oauth.ClientApp
		for range stormInstances {
			apps = append(apps, newIndigo(f.newClient(b), store))
		}
		call := func(ctx context.Context, app *oauth.ClientApp, sd *oauth.ClientSessionData) error {
			sess, err := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
			if err != nil {
				return err
			}
			var out struct {
				DID string `json:"did"`
			}
			return sess.APIClient().Get(ctx, syntax.NSID("com.atproto.server.getSession"), nil, &out)
		}
		var total stormResult
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			sd, err := indigoLogin(context.Background(), apps[0], f, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := call(context.Background(), apps[0], sd); err != nil {
				b.Fatal(err)
			}
			f.ExpireAccessTokens()
			grants, refreshes := f.LiveGrants(), f.refreshes.Load()
			b.StartTimer()
			total.failed += storm(func(ctx context.Context, i int) error { return call(ctx, apps[i], sd) })
			b.StopTimer()
			total.refreshes += f.refreshes.Load() - refreshes
			total.grantsLost += int64(grants - f.LiveGrants())
			b.StartTimer()
		}
		reportStorm(b, total)
	})
}
