package memstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) atauth.Store { return New() })
}

// TestShared runs the cross-instance checks on two handles of one backend,
// made with Share, as two processes would hold two connections to one
// database. The handles share data, not identity, so the checks exercise
// the backend's locking rather than a per-handle shortcut.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (atauth.Store, atauth.Store) {
		s := New()
		return s, s.Share()
	})
}

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestClock(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := NewWithClock(clock.Now)
	t0 := clock.Now()

	rec := atauth.SessionRecord{ID: "s1", DID: "did:plc:a", Kind: atauth.KindBrowser, GroupID: "g", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOnce(ctx, "k", []byte("v"), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.AcquireLease(ctx, "l", "alice", time.Minute); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Minute) // exactly at expiry of the value and the lease
	if _, err := s.TakeOnce(ctx, "k"); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("TakeOnce at its expiry: got %v, want ErrNotFound", err)
	}
	if err := s.AcquireLease(ctx, "l", "bob", time.Minute); err != nil {
		t.Errorf("AcquireLease at the lease's expiry: got %v, want nil", err)
	}
	if _, err := s.GetSession(ctx, "s1"); err != nil {
		t.Errorf("GetSession before expiry: got %v, want nil", err)
	}

	clock.Advance(59 * time.Minute) // exactly at the session's expiry
	if _, err := s.GetSession(ctx, "s1"); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("GetSession at ExpiresAt: got %v, want ErrNotFound", err)
	}

	// Bob's lease (taken at t0+1m for 1m) and the session have expired.
	n, err := s.PurgeExpired(ctx)
	if err != nil || n != 2 {
		t.Errorf("PurgeExpired: got %d, %v, want 2, nil", n, err)
	}
	if n, err := s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Errorf("second PurgeExpired: got %d, %v, want 0, nil", n, err)
	}
	if got := len(s.b.byGroup) + len(s.b.byDID); got != 0 {
		t.Errorf("index entries after purging every session: got %d, want 0", got)
	}
}

func TestIndexesFollowUpdates(t *testing.T) {
	ctx := context.Background()
	s := New()
	now := time.Now()
	rec := atauth.SessionRecord{ID: "s1", DID: "did:plc:a", Kind: atauth.KindBrowser, GroupID: "g1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Version = 1
	rec.GroupID = ""
	rec.DID = "did:plc:b"
	rec.Kind = atauth.KindDeveloper
	if err := s.UpdateSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name string
		list func() ([]atauth.SessionRecord, error)
		want int
	}{
		{"group g1", func() ([]atauth.SessionRecord, error) { return s.ListSessionsByGroup(ctx, "g1") }, 0},
		{"group empty", func() ([]atauth.SessionRecord, error) { return s.ListSessionsByGroup(ctx, "") }, 0},
		{"old DID", func() ([]atauth.SessionRecord, error) {
			return s.ListSessionsByDID(ctx, "did:plc:a", atauth.KindBrowser)
		}, 0},
		{"new DID", func() ([]atauth.SessionRecord, error) {
			return s.ListSessionsByDID(ctx, "did:plc:b", atauth.KindDeveloper)
		}, 1},
	} {
		got, err := q.list()
		if err != nil || len(got) != q.want {
			t.Errorf("list by %s: got %d records, %v, want %d, nil", q.name, len(got), err, q.want)
		}
	}
	if err := s.DeleteSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if got := len(s.b.byGroup) + len(s.b.byDID); got != 0 {
		t.Errorf("index entries after deleting every session: got %d, want 0", got)
	}
}

func TestNonPositiveTTL(t *testing.T) {
	s := New()
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := s.AcquireLease(context.Background(), "l", "o", ttl); err == nil {
			t.Errorf("AcquireLease with ttl %v: got nil error, want an error", ttl)
		}
	}
}

func TestGetSessionAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are checked in long mode")
	}
	s, id := benchStore(t)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.GetSession(ctx, id); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("GetSession: got %v allocations, want 0", allocs)
	}
}

func benchStore(tb testing.TB) (*Store, string) {
	s := New()
	now := time.Now()
	for _, id := range []string{
		"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		"fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9",
	} {
		rec := atauth.SessionRecord{
			ID: id, DID: "did:plc:ewvi7nxzyoun6zhxrhs64oiz", Handle: "alice.example.com",
			Kind: atauth.KindBrowser, Scopes: "atproto transition:generic",
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), Sealed: make([]byte, 1024),
		}
		if err := s.CreateSession(context.Background(), rec); err != nil {
			tb.Fatal(err)
		}
	}
	return s, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
}

func BenchmarkGetSession(b *testing.B) {
	s, id := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetSessionParallel(b *testing.B) {
	s, id := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetSession(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
