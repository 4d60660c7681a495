package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/storeadapters/memstore"
	"github.com/atauth/atauth/storeadapters/pgstore"
	"github.com/atauth/atauth/storeadapters/redisstore"
	"github.com/atauth/atauth/storeadapters/sqlitestore"
)

// The environment variables of the backends, the same as the core
// module's tests. Benchmarks that need a backend skip without its variable.
const (
	postgresVar = "ATAUTH_TEST_POSTGRES" // e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
	redisVar    = "ATAUTH_TEST_REDIS"    // e.g. 127.0.0.1:6379
)

// sealingSecret is shared by every Manager, so that Managers made separately
// open each other's records.
const sealingSecret = "bench-sealing-key-of-32-bytes!!!"

const redirectURL = "http://127.0.0.1/auth/callback"

var scopes = []string{"atproto", "transition:generic"}

// countingTransport counts the requests a client sends.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// counted returns a client sending through hc's transport, and its counter.
func counted(hc *http.Client) (*http.Client, *countingTransport) {
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	ct := &countingTransport{next: next}
	return &http.Client{Transport: ct, Timeout: hc.Timeout}, ct
}

// loopbackClient returns a client with connections of its own.
func loopbackClient(tb testing.TB) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// testConfig is a Manager configuration for a loopback public client of
// atauthtest's network.
func testConfig(network *atauthtest.Network, store atauth.Store, hc *http.Client) atauth.Config {
	return atauth.Config{
		RedirectURL:                redirectURL,
		Scopes:                     scopes,
		SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: []byte(sealingSecret)}},
		Store:                      store,
		PLCURL:                     network.PLCURL(),
		HandleResolverURL:          network.HandleResolverURL(),
		InsecureAllowLocalNetworks: true,
		HTTPClient:                 hc,
		RateLimiter:                atauth.NoRateLimit,
		Logger:                     slog.New(slog.DiscardHandler),
	}
}

// fakeConfig is a Manager configuration for a public client of fakeNet,
// over hc (fakeNet.Client or a copy): https names, no local-network
// exception.
func fakeConfig(store atauth.Store, hc *http.Client) atauth.Config {
	return atauth.Config{
		RedirectURL:       redirectURL,
		Scopes:            scopes,
		SealingKeys:       []atauth.SealingKey{{ID: "k1", Secret: []byte(sealingSecret)}},
		Store:             store,
		PLCURL:            fakePLC,
		HandleResolverURL: fakePDS,
		HTTPClient:        hc,
		RateLimiter:       atauth.NoRateLimit,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

func newManager(tb testing.TB, cfg atauth.Config) *atauth.Manager {
	tb.Helper()
	m, err := atauth.New(cfg)
	if err != nil {
		tb.Fatalf("atauth.New: %v", err)
	}
	return m
}

// newAccount starts an atauthtest network with alice.test.
func newAccount(tb testing.TB) (*atauthtest.Network, atauthtest.Account) {
	tb.Helper()
	n := atauthtest.NewNetwork(tb)
	a, err := n.CreateAccount("alice.test", "alice-pw")
	if err != nil {
		tb.Fatal(err)
	}
	return n, a
}

// approver hands a client's authorization URL to the network and returns
// the callback URL.
type approver func(ctx context.Context, authURL string) (string, error)

func approveAt(n *atauthtest.Network, a atauthtest.Account) approver {
	return func(ctx context.Context, authURL string) (string, error) {
		return n.Approve(ctx, authURL, a.Handle, a.Password)
	}
}

func approveFake(f *fakeNet) approver {
	return func(_ context.Context, authURL string) (string, error) { return f.Approve(authURL) }
}

// login signs handle in through m with the Manager API and returns the
// callback's result (its exchange token not redeemed). pause and resume,
// when not nil, are called around the approval so that a benchmark can
// stop its timer while "the user" consents.
func login(ctx context.Context, m *atauth.Manager, handle string, approve approver, pause, resume func()) (*atauth.CallbackResult, error) {
	start, err := m.StartLogin(ctx, handle)
	if err != nil {
		return nil, fmt.Errorf("StartLogin: %w", err)
	}
	if pause != nil {
		pause()
	}
	cb, err := approve(ctx, start.AuthURL)
	if resume != nil {
		resume()
	}
	if err != nil {
		return nil, fmt.Errorf("approving: %w", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		return nil, err
	}
	res, err := m.HandleCallback(ctx, u.Query(), start.FlowCookie)
	if err != nil {
		return nil, fmt.Errorf("HandleCallback: %w", err)
	}
	return res, nil
}

// signIn logs in and redeems the exchange token; it returns the session id.
func signIn(tb testing.TB, m *atauth.Manager, handle string, approve approver) string {
	tb.Helper()
	ctx := context.Background()
	res, err := login(ctx, m, handle, approve, nil, nil)
	if err != nil {
		tb.Fatalf("login: %v", err)
	}
	x, err := m.Exchange(ctx, atauth.ExchangeRequest{Token: res.ExchangeToken})
	if err != nil {
		tb.Fatalf("Exchange: %v", err)
	}
	return x.SessionID
}

// storeKey is the Store key of a session id: the hex SHA-256 atauth
// documents on SessionRecord.ID.
func storeKey(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return hex.EncodeToString(sum[:])
}

// backend is one kind of Store, able to hand out several handles on one
// fresh backend, as separate instances of an application hold them.
type backend struct {
	name string
	// open returns n Stores on one fresh backend, each with its own
	// connections, and what the bare-read helpers need.
	open func(tb testing.TB, n int) []atauth.Store
}

// backends lists the stores; those whose environment variable is unset
// skip.
func backends() []backend {
	return []backend{
		{"memstore", func(tb testing.TB, n int) []atauth.Store {
			s := memstore.New()
			out := []atauth.Store{s}
			for len(out) < n {
				out = append(out, s.Share())
			}
			return out
		}},
		{"sqlitestore", func(tb testing.TB, n int) []atauth.Store {
			path := filepath.Join(tb.TempDir(), "atauth.db")
			var out []atauth.Store
			for range n {
				s, err := sqlitestore.Open(path)
				if err != nil {
					tb.Fatalf("sqlitestore.Open: %v", err)
				}
				tb.Cleanup(func() { s.Close() })
				out = append(out, s)
			}
			return out
		}},
		{"pgstore", func(tb testing.TB, n int) []atauth.Store {
			schema := pgSchema(tb)
			var out []atauth.Store
			for range n {
				out = append(out, pgstore.New(pgPool(tb, ""), pgstore.WithSchema(schema)))
			}
			return out
		}},
		{"redisstore", func(tb testing.TB, n int) []atauth.Store {
			prefix := redisPrefix(tb)
			var out []atauth.Store
			for range n {
				out = append(out, redisstore.New(redisClient(tb), redisstore.WithPrefix(prefix)))
			}
			return out
		}},
	}
}

func pgDSN(tb testing.TB) string {
	v := os.Getenv(postgresVar)
	if v == "" {
		tb.Skipf("skipping: set %s to run against PostgreSQL", postgresVar)
	}
	return v
}

// pgPool returns a pool; with a schema, its connections search it first.
func pgPool(tb testing.TB, searchPath string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(pgDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	if searchPath != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = searchPath
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pool.Ping(context.Background()); err != nil {
		tb.Fatalf("PostgreSQL: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// pgSchema creates a fresh schema migrated for pgstore, dropped when tb
// ends.
func pgSchema(tb testing.TB) string {
	tb.Helper()
	pool := pgPool(tb, "")
	schema := "atauth_bench_" + strings.ToLower(rand.Text()[:12])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	if err := pgstore.New(pool, pgstore.WithSchema(schema)).Migrate(context.Background()); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return schema
}

func redisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	addr := os.Getenv(redisVar)
	if addr == "" {
		tb.Skipf("skipping: set %s to run against Redis", redisVar)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("Redis: %v", err)
	}
	return c
}

// redisPrefix returns a fresh key prefix whose keys are deleted when tb
// ends.
func redisPrefix(tb testing.TB) string {
	tb.Helper()
	c := redisClient(tb)
	prefix := "{atauthbench" + strings.ToLower(rand.Text()[:8]) + "}:"
	tb.Cleanup(func() { deleteKeys(c, prefix) })
	return prefix
}

func deleteKeys(c *redis.Client, prefix string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 10000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 10000 {
			c.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Unlink(ctx, batch...)
	}
}

// sqliteDB opens the file at path with modernc.org/sqlite, the driver
// sqlitestore uses.
func sqliteDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}
