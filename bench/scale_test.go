package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/jackc/pgx/v5"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
	"github.com/atauth/atauth/storeadapters/pgstore"
	"github.com/atauth/atauth/storeadapters/redisstore"
)

// sessionIDs makes session ids shaped like atauth's (the same length and
// alphabet as template), derived from an index so that a benchmark can
// pick a random existing one.
type sessionIDs struct{ n int }

func newSessionIDs(template string) sessionIDs {
	return sessionIDs{n: base64.RawURLEncoding.DecodedLen(len(template))}
}

func (s sessionIDs) id(i int) string {
	sum := sha256.Sum256([]byte("bench-session-" + strconv.Itoa(i)))
	return base64.RawURLEncoding.EncodeToString(sum[:s.n])
}

// templateSession signs alice in on store and returns her session's record
// and id: the record the scale benchmarks copy.
func templateSession(b *testing.B, store atauth.Store) (*atauth.Manager, atauth.SessionRecord, string) {
	b.Helper()
	network, alice := newAccount(b)
	m := newManager(b, testConfig(network, store, loopbackClient(b)))
	id := signIn(b, m, alice.Handle, approveAt(network, alice))
	rec, err := store.GetSession(context.Background(), storeKey(id))
	if err != nil {
		b.Fatal(err)
	}
	return m, rec, id
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerSession fills a memory store with 100,000 sessions
// and reports the heap each one takes, "B/session": atauth's memstore with
// copies of a real signed-in session (each with its own sealed bytes),
// beside scs's memstore with the comparable session of BenchmarkRequest.
func BenchmarkMemoryPerSession(b *testing.B) {
	const n = 100_000
	_, rec, id := templateSession(b, memstore.New())
	ids := newSessionIDs(id)
	ctx := context.Background()
	b.Run("atauth-memstore", func(b *testing.B) {
		var per float64
		for b.Loop() {
			before := heapInUse()
			s := memstore.New()
			for i := range n {
				r := rec
				r.ID = storeKey(ids.id(i))
				r.Sealed = bytes.Clone(rec.Sealed)
				if err := s.CreateSession(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			per = float64(heapInUse()-before) / n
			runtime.KeepAlive(s)
		}
		b.ReportMetric(per, "B/session")
	})
	b.Run("scs-memstore", func(b *testing.B) {
		var per float64
		for b.Loop() {
			before := heapInUse()
			s := scsmem.NewWithCleanupInterval(0)
			var codec scs.GobCodec
			for i := range n {
				enc, err := codec.Encode(time.Now().Add(time.Hour), map[string]any{
					"did": rec.DID, "handle": rec.Handle, "scopes": rec.Scopes, "tokens": make([]byte, len(rec.Sealed)),
				})
				if err != nil {
					b.Fatal(err)
				}
				// The token is shaped like atauth's session ids; scs's own
				// tokens are 43 characters too.
				if err := s.Commit(ids.id(i), enc, time.Now().Add(time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
			per = float64(heapInUse()-before) / n
			runtime.KeepAlive(s)
		}
		b.ReportMetric(per, "B/session")
	})
}

// BenchmarkAuthenticateMillion loads 1,000,000 sessions, copies of a real
// signed-in one, into PostgreSQL and into Redis, and reports the latency of
// Authenticate on random ones: "p50-µs" and "p99-µs". Loading takes a
// minute or two, so it runs only with ATAUTH_BENCH_MILLION=1 (and the
// backends' variables).
func BenchmarkAuthenticateMillion(b *testing.B) {
	if os.Getenv("ATAUTH_BENCH_MILLION") != "1" {
		b.Skip("skipping: set ATAUTH_BENCH_MILLION=1 to load 1,000,000 sessions")
	}
	const n = 1_000_000
	ctx := context.Background()
	b.Run("postgres", func(b *testing.B) {
		schema := pgSchema(b)
		pool := pgPool(b, "")
		m, rec, id := templateSession(b, pgstore.New(pool, pgstore.WithSchema(schema)))
		ids := newSessionIDs(id)
		rows := pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return []any{storeKey(ids.id(i)), rec.DID, rec.Handle, string(rec.Kind), rec.GroupID, rec.Name, rec.Prefix,
				rec.Scopes, rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, rec.Version, rec.Sealed}, nil
		})
		cols := []string{"id", "did", "handle", "kind", "group_id", "name", "prefix", "scopes",
			"created_at", "expires_at", "last_used_at", "version", "sealed"}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "atauth_sessions"}, cols, rows); err != nil {
			b.Fatalf("CopyFrom: %v", err)
		}
		if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "atauth_sessions"}.Sanitize()); err != nil {
			b.Fatal(err)
		}
		authenticatePercentiles(b, m, ids, n)
	})
	b.Run("redis", func(b *testing.B) {
		prefix := redisPrefix(b)
		c := redisClient(b)
		m, _, id := templateSession(b, redisstore.New(c, redisstore.WithPrefix(prefix)))
		ids := newSessionIDs(id)
		// The record's value does not hold its key, so the template's
		// value serves every copy.
		val, err := c.Get(ctx, prefix+"s:"+storeKey(id)).Bytes()
		if err != nil {
			b.Fatal(err)
		}
		const batch = 10_000
		for lo := 0; lo < n; lo += batch {
			p := c.Pipeline()
			for i := lo; i < lo+batch; i++ {
				p.Set(ctx, prefix+"s:"+storeKey(ids.id(i)), val, time.Hour)
			}
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		authenticatePercentiles(b, m, ids, n)
	})
}

func authenticatePercentiles(b *testing.B, m *atauth.Manager, ids sessionIDs, n int) {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api", nil)
	lat := make([]time.Duration, 0, 100_000)
	b.ResetTimer()
	for b.Loop() {
		req.Header.Set("Cookie", "theme=dark; session_id="+ids.id(rand.IntN(n))+"; lang=en")
		t0 := time.Now()
		if _, err := m.Authenticate(req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
}

// capturingStore records the one-time values a Manager puts while capture
// is on: the benchmark below uses it to put an exchange token's record
// back after it has been redeemed, so that one real sign-in serves every
// round.
type capturingStore struct {
	atauth.Store
	mu      sync.Mutex
	capture bool
	key     string
	value   []byte
}

func (c *capturingStore) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	c.mu.Lock()
	if c.capture {
		c.key, c.value = key, bytes.Clone(value)
	}
	c.mu.Unlock()
	return c.Store.PutOnce(ctx, key, value, expiresAt)
}

// BenchmarkExchangeContention measures rounds of 64 concurrent
// redemptions of one exchange token spread over 4 Managers with Store
// handles of their own: each round must have exactly one winner. It
// reports the time per round and "redemptions/s". The token's record is
// put back before each round (inside the timer: one PutOnce).
func BenchmarkExchangeContention(b *testing.B) {
	const redemptions = 64
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			network, alice := newAccount(b)
			stores := be.open(b, stormInstances)
			cs := &capturingStore{Store: stores[0]}
			ms := []*atauth.Manager{newManager(b, testConfig(network, cs, loopbackClient(b)))}
			for _, s := range stores[1:] {
				ms = append(ms, newManager(b, testConfig(network, s, loopbackClient(b))))
			}
			ctx := context.Background()
			start, err := ms[0].StartLogin(ctx, alice.Handle)
			if err != nil {
				b.Fatal(err)
			}
			cb, err := network.Approve(ctx, start.AuthURL, alice.Handle, alice.Password)
			if err != nil {
				b.Fatal(err)
			}
			u, err := url.Parse(cb)
			if err != nil {
				b.Fatal(err)
			}
			cs.capture = true
			res, err := ms[0].HandleCallback(ctx, u.Query(), start.FlowCookie)
			cs.capture = false
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := cs.Store.PutOnce(ctx, cs.key, cs.value, time.Now().Add(time.Minute)); err != nil {
					b.Fatal(err)
				}
				var wins, others atomic.Int64
				var wg sync.WaitGroup
				for i := range redemptions {
					m := ms[i%len(ms)]
					wg.Go(func() {
						_, err := m.Exchange(ctx, atauth.ExchangeRequest{Token: res.ExchangeToken})
						switch {
						case err == nil:
							wins.Add(1)
						case !errors.Is(err, atauth.ErrInvalidExchangeToken):
							others.Add(1)
						}
					})
				}
				wg.Wait()
				if wins.Load() != 1 || others.Load() != 0 {
					b.Fatalf("round: %d winners and %d errors; want 1 and 0", wins.Load(), others.Load())
				}
			}
			b.ReportMetric(float64(b.N*redemptions)/b.Elapsed().Seconds(), "redemptions/s")
		})
	}
}
