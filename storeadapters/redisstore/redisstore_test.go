package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/testenv"
	"github.com/atauth/atauth/storetest"
)

// newTestClient returns a client of the test Redis, closed when tb ends. It
// skips or fails tb, as testenv decides, when there is no Redis.
func newTestClient(tb testing.TB) *redis.Client {
	tb.Helper()
	return newClient(tb, &redis.Options{Addr: testenv.Redis(tb)})
}

func newClient(tb testing.TB, opts *redis.Options) *redis.Client {
	tb.Helper()
	client := redis.NewClient(opts)
	tb.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		testenv.Unreachable(tb, "Redis at "+opts.Addr, err)
	}
	return client
}

// testPrefix returns a key prefix of its own for tb, so that tests can run
// in parallel on one Redis, and deletes its keys when tb ends.
func testPrefix(tb testing.TB, client *redis.Client) string {
	prefix := "{atauth-test-" + strings.ToLower(rand.Text()[:12]) + "}:"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var keys []string
		iter := client.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Errorf("cleaning up %s*: %v", prefix, err)
			return
		}
		for chunk := range slices.Chunk(keys, 500) {
			if err := client.Del(ctx, chunk...).Err(); err != nil {
				tb.Errorf("cleaning up %s*: %v", prefix, err)
				return
			}
		}
	})
	return prefix
}

func TestStore(t *testing.T) {
	client := newTestClient(t)
	storetest.Run(t, func(t *testing.T) atauth.Store {
		return New(client, WithPrefix(testPrefix(t, client)))
	})
}

// TestShared gives each Store of a pair a client of its own, as two
// processes would have.
func TestShared(t *testing.T) {
	a, b := newTestClient(t), newTestClient(t)
	storetest.RunShared(t, func(t *testing.T) (atauth.Store, atauth.Store) {
		prefix := testPrefix(t, a)
		return New(a, WithPrefix(prefix)), New(b, WithPrefix(prefix))
	})
}

func session(id, did, group string, expiresAt time.Time) atauth.SessionRecord {
	return atauth.SessionRecord{
		ID:        id,
		DID:       did,
		Handle:    "alice.example.com",
		Kind:      atauth.KindBrowser,
		GroupID:   group,
		Scopes:    "atproto",
		CreatedAt: time.Now(),
		ExpiresAt: expiresAt,
		Sealed:    []byte("sealed:" + id),
	}
}

func TestKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newTestClient(t)
	prefix := testPrefix(t, client)
	s := New(client, WithPrefix(prefix))

	exp := time.Now().Add(time.Hour)
	if err := s.CreateSession(ctx, session("id1", "did:plc:a", "g1", exp)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOnce(ctx, "k1", []byte("v"), exp); err != nil {
		t.Fatal(err)
	}
	if err := s.AcquireLease(ctx, "l1", "owner", time.Minute); err != nil {
		t.Fatal(err)
	}

	// Every key is under the prefix and expires by itself.
	for _, key := range []string{"s:id1", "g:g1", "d:browser:did:plc:a", "o:k1", "l:l1"} {
		ttl, err := client.PTTL(ctx, prefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("PTTL(%q): got %v, want a positive TTL", prefix+key, ttl)
		}
	}
	if got, err := client.Get(ctx, prefix+"l:l1").Result(); err != nil || got != "owner" {
		t.Errorf("lease key: got %q, %v, want %q", got, err, "owner")
	}
	n, err := client.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	iter := client.Scan(ctx, 0, globEscape(prefix)+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) != 5 {
		t.Errorf("keys under %q: got %q (of %d in the database), want 5", prefix, keys, n)
	}
}

// TestPastExpiryStoresNothing checks that a record written already expired
// leaves no key behind, not even an index entry.
func TestPastExpiryStoresNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newTestClient(t)
	prefix := testPrefix(t, client)
	s := New(client, WithPrefix(prefix))

	past := time.Now().Add(-time.Minute)
	if err := s.CreateSession(ctx, session("gone", "did:plc:a", "g", past)); err != nil {
		t.Fatalf("CreateSession with a past expiry: got %v, want nil", err)
	}
	if err := s.PutOnce(ctx, "gone", []byte("v"), past); err != nil {
		t.Fatalf("PutOnce with a past expiry: got %v, want nil", err)
	}
	if err := s.PutOnce(ctx, "epoch", []byte("v"), time.Time{}); err != nil {
		t.Fatalf("PutOnce with the zero time: got %v, want nil", err)
	}
	rec := session("live", "did:plc:a", "g", time.Now().Add(time.Hour))
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Version = 1
	rec.ExpiresAt = past
	if err := s.UpdateSession(ctx, rec); err != nil {
		t.Fatalf("UpdateSession to a past expiry: got %v, want nil", err)
	}
	if n, err := client.Exists(ctx, prefix+"s:gone", prefix+"o:gone", prefix+"o:epoch", prefix+"s:live", prefix+"g:g", prefix+"d:browser:did:plc:a").Result(); err != nil || n != 0 {
		t.Errorf("keys left: got %d, %v, want 0", n, err)
	}
}

// TestStaleMembers checks that members whose sessions expired are dropped by
// lists and by PurgeExpired, and that a reused id is listed only under the
// sets of its new record.
func TestStaleMembers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newTestClient(t)
	prefix := testPrefix(t, client)
	s := New(client, WithPrefix(prefix))

	long := time.Now().Add(time.Hour)
	short := time.Now().Add(150 * time.Millisecond)
	for _, rec := range []atauth.SessionRecord{
		session("long1", "did:plc:a", "g1", long),
		session("long2", "did:plc:b", "g2", long),
		session("short1", "did:plc:a", "g1", short),
		session("short2", "did:plc:b", "g2", short),
	} {
		if err := s.CreateSession(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(short) + 50*time.Millisecond)

	// short1 comes back, in another group and for another DID.
	if err := s.CreateSession(ctx, session("short1", "did:plc:c", "g3", long)); err != nil {
		t.Fatalf("CreateSession over an expired id: got %v, want nil", err)
	}
	members := func(key string) []string {
		t.Helper()
		m, err := client.SMembers(ctx, prefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := members("g:g1"); len(m) != 2 {
		t.Fatalf("g1 before listing: got members %q, want the live and the stale one", m)
	}
	l, err := s.ListSessionsByGroup(ctx, "g1")
	if err != nil || len(l) != 1 || l[0].ID != "long1" {
		t.Errorf("ListSessionsByGroup(g1): got %q, %v, want [long1]", ids(l), err)
	}
	if m := members("g:g1"); len(m) != 1 || m[0] != "long1" {
		t.Errorf("g1 after listing: got members %q, want [long1]", m)
	}
	l, err = s.ListSessionsByGroup(ctx, "g3")
	if err != nil || len(l) != 1 || l[0].ID != "short1" {
		t.Errorf("ListSessionsByGroup(g3): got %q, %v, want [short1]", ids(l), err)
	}

	// Stale: short1 in did:plc:a, short2 in g2 and did:plc:b.
	n, err := s.PurgeExpired(ctx)
	if err != nil || n != 3 {
		t.Errorf("PurgeExpired: got %d, %v, want 3, nil", n, err)
	}
	for key, want := range map[string]string{"g:g2": "long2", "d:browser:did:plc:a": "long1", "d:browser:did:plc:b": "long2"} {
		if m := members(key); len(m) != 1 || m[0] != want {
			t.Errorf("%s after purge: got members %q, want [%s]", key, m, want)
		}
	}
	if n, err := s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Errorf("second PurgeExpired: got %d, %v, want 0, nil", n, err)
	}
}

func ids(recs []atauth.SessionRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// countingHook counts the commands a client sends.
type countingHook struct {
	mu   sync.Mutex
	cmds []string
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, "pipeline")
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *countingHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.cmds
	h.cmds = nil
	return c
}

// TestRoundTrips checks that each call is one command: GetSession one GET,
// every other call one command or script.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newTestClient(t)
	prefix := testPrefix(t, client)
	s := New(client, WithPrefix(prefix))
	rec := session("id", "did:plc:a", "g", time.Now().Add(time.Hour))
	// Load the scripts, so that EVALSHA does not fall back to EVAL.
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Version = 1
	if err := s.UpdateSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListSessionsByGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	rec.Version = 2

	hook := &countingHook{}
	client.AddHook(hook)
	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"GetSession", func() error { _, err := s.GetSession(ctx, "id"); return err }, "get"},
		{"UpdateSession", func() error { return s.UpdateSession(ctx, rec) }, "evalsha"},
		{"ListSessionsByGroup", func() error { _, err := s.ListSessionsByGroup(ctx, "g"); return err }, "evalsha"},
		{"ListSessionsByDID", func() error { _, err := s.ListSessionsByDID(ctx, "did:plc:a", atauth.KindBrowser); return err }, "evalsha"},
		{"PutOnce", func() error { return s.PutOnce(ctx, "k", []byte("v"), time.Now().Add(time.Minute)) }, "set"},
		{"TakeOnce", func() error { _, err := s.TakeOnce(ctx, "k"); return err }, "getdel"},
	}
	for _, c := range calls {
		hook.take()
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := hook.take(); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: got commands %q, want [%s]", c.name, got, c.want)
		}
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	rec := session("id", "did:plc:a", "g", time.Now().Add(time.Hour))
	good := string(encode(rec))
	if _, err := decode("id", good); err != nil {
		t.Fatalf("decode of a good record: %v", err)
	}
	for name, v := range map[string]string{
		"empty":          "",
		"format":         "\x02" + good[1:],
		"truncated":      good[:len(good)-1],
		"trailing bytes": good + "x",
		"header only":    good[:headerLen],
		"huge length":    good[:headerLen] + "\xff\xff\xff\xff",
	} {
		if _, err := decode("id", v); !errors.Is(err, errBadRecord) {
			t.Errorf("decode(%s): got %v, want errBadRecord", name, err)
		}
	}
}

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{
		"{atauth}:": "{atauth}:",
		"a*b?[c]\\": `a\*b\?\[c\]\\`,
	} {
		if got := globEscape(in); got != want {
			t.Errorf("globEscape(%q): got %q, want %q", in, got, want)
		}
	}
}

func TestLeaseTTL(t *testing.T) {
	client := newTestClient(t)
	s := New(client, WithPrefix(testPrefix(t, client)))
	if err := s.AcquireLease(context.Background(), "k", "o", 0); err == nil {
		t.Errorf("AcquireLease with ttl 0: got nil, want an error")
	}
}

// TestScriptLayout checks that the scripts read the strings of a record where
// encode writes them.
func TestScriptLayout(t *testing.T) {
	if want := fmt.Sprintf("field(s, %d)", headerLen+1); !strings.Contains(luaPrelude, want) {
		t.Errorf("luaPrelude does not read the first string at %d, after the %d-byte header", headerLen+1, headerLen)
	}
}

// TestZeroTimes checks that a record whose CreatedAt and LastUsedAt were
// never set reads back with zero times.
func TestZeroTimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newTestClient(t)
	s := New(client, WithPrefix(testPrefix(t, client)))
	rec := atauth.SessionRecord{ID: "id", DID: "did:plc:a", Kind: atauth.KindBrowser, ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	got, err := s.GetSession(ctx, rec.ID)
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if !got.CreatedAt.IsZero() || !got.LastUsedAt.IsZero() {
		t.Errorf("GetSession: got CreatedAt %v, LastUsedAt %v, want zero times", got.CreatedAt, got.LastUsedAt)
	}
}
