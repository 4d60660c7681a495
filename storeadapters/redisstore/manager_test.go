package redisstore

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/managertest"
	"github.com/atauth/atauth/internal/testenv"
)

// TestManagers runs the multi-instance scenarios with a client of its own
// per Manager, on one prefix.
//
// It does not run in parallel: a thousand PDS calls at once keep the CPUs
// busy, and would slow the outage tests past their patience.
func TestManagers(t *testing.T) {
	managertest.Run(t, func(t *testing.T, n int) []atauth.Store {
		prefix := testPrefix(t, newTestClient(t))
		stores := make([]atauth.Store, n)
		for i := range stores {
			stores[i] = New(newTestClient(t), WithPrefix(prefix))
		}
		return stores
	})
}

// viaProxy returns a Store on a client that reaches Redis through a proxy
// the test can cut, a Store on a direct client with the same prefix, and
// the proxy.
func viaProxy(t *testing.T) (*Store, *Store, *proxy) {
	t.Helper()
	direct := newTestClient(t)
	prefix := testPrefix(t, direct)
	p := startProxy(t, testenv.Redis(t))
	client := newClient(t, &redis.Options{
		Addr:         p.addr(),
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolTimeout:  2 * time.Second,
	})
	return New(client, WithPrefix(prefix)), New(direct, WithPrefix(prefix)), p
}

// TestManagerOutage cuts the network between a Manager's Store and Redis,
// through a proxy of the test's own, while browsers sign in.
func TestManagerOutage(t *testing.T) {
	t.Parallel()
	s, direct, p := viaProxy(t)
	managertest.RunOutage(t, managertest.Outage{Store: s, Direct: direct, Cut: p.Cut, Restore: p.Restore})
}

// TestManagerAddAccountCut cuts the network to Redis between the two
// writes of an add-account.
func TestManagerAddAccountCut(t *testing.T) {
	t.Parallel()
	s, direct, p := viaProxy(t)
	managertest.RunAddAccountCut(t, managertest.Outage{Store: s, Direct: direct, Cut: p.Cut, Restore: p.Restore})
}

// TestAuthenticateOneRoundTrip checks that authenticating a request is one
// GET.
func TestAuthenticateOneRoundTrip(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	m, id := managertest.SignedIn(t, New(client, WithPrefix(testPrefix(t, client))))
	hook := &countingHook{}
	client.AddHook(hook)
	req := managertest.CookieRequest(id)
	const n = 20
	for range n {
		if _, err := m.Authenticate(req); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
	}
	want := slices.Repeat([]string{"get"}, n)
	if got := hook.take(); !slices.Equal(got, want) {
		t.Errorf("commands for %d authentications: got %q, want %d GETs", n, got, n)
	}
}

// TestListIdleSessionsTimes checks ListIdleSessions at the edges of the
// record's time encoding: a zero LastUsedAt (negative Unix seconds) is
// idle, and the cutoff compares nanoseconds.
func TestListIdleSessionsTimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newTestClient(t)
	s := New(client, WithPrefix(testPrefix(t, client)))
	cutoff := time.Unix(1_800_000_000, 500)
	for id, used := range map[string]time.Time{
		"zero":   {},
		"before": cutoff.Add(-time.Nanosecond),
		"at":     cutoff,
		"after":  cutoff.Add(time.Nanosecond),
	} {
		rec := session(id, "did:plc:a", "", time.Now().Add(time.Hour))
		rec.LastUsedAt = used
		if err := s.CreateSession(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListIdleSessions(ctx, cutoff, -1)
	if err != nil || !slices.Equal(ids(got), []string{"zero", "before"}) {
		t.Errorf("ListIdleSessions: got %q, %v, want [zero before]", ids(got), err)
	}
	got, err = s.ListIdleSessions(ctx, cutoff, 0)
	if err != nil || len(got) != 0 {
		t.Errorf("ListIdleSessions with limit 0: got %q, %v, want none", ids(got), err)
	}
}

// BenchmarkAuthenticate compares Manager.Authenticate of a cookie request,
// for a session created by a real sign-in, with go-redis's own GET of the
// same key, in the same run:
//
//	go test -run '^$' -bench 'BenchmarkAuthenticate$' ./storeadapters/redisstore/
func BenchmarkAuthenticate(b *testing.B) {
	client := newTestClient(b)
	hook := &commandCounter{}
	client.AddHook(hook)
	s := New(client, WithPrefix(testPrefix(b, client)))
	m, id := managertest.SignedIn(b, s)
	bare := func(ctx context.Context, key string) error {
		return client.Get(ctx, s.sessionKey(key)).Err()
	}
	managertest.CompareAuthenticate(b, m, id, bare, hook.n.Load)
}

// commandCounter counts the commands a client sends, cheaply enough for a
// benchmark.
type commandCounter struct{ n atomic.Int64 }

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
