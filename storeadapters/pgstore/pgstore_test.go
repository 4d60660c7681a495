package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/testenv"
	"github.com/atauth/atauth/storeadapters/pgstore"
	"github.com/atauth/atauth/storetest"
)

// newPool connects to the test server, or skips (fails under CI) when there
// is none. configure, if not nil, adjusts the pool's configuration; the
// pool is closed when tb ends.
func newPool(tb testing.TB, configure func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	return newPoolAt(tb, testenv.Postgres(tb), configure)
}

func newPoolAt(tb testing.TB, dsn string, configure func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("pgxpool.ParseConfig(%s): %v", testenv.PostgresVar, err)
	}
	if configure != nil {
		configure(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		testenv.Unreachable(tb, "PostgreSQL", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		testenv.Unreachable(tb, "PostgreSQL", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// newSchema returns the name of a fresh, migrated schema on pool's server,
// dropped when tb ends, so that tests running in parallel do not see each
// other's rows.
func newSchema(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	schema := "atauth_test_" + strings.ToLower(rand.Text()[:16])
	tb.Cleanup(func() {
		// A minute: dropping the million-row benchmark's table takes a while.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("dropping test schema %s: %v", schema, err)
		}
	})
	if err := pgstore.New(pool, pgstore.WithSchema(schema)).Migrate(context.Background()); err != nil {
		tb.Fatalf("Migrate: got %v, want nil", err)
	}
	return schema
}

func TestStore(t *testing.T) {
	t.Parallel()
	pool := newPool(t, nil)
	storetest.Run(t, func(t *testing.T) atauth.Store {
		return pgstore.New(pool, pgstore.WithSchema(newSchema(t, pool)))
	})
}

// TestStoreShared runs the shared suite on two pools, as two processes of
// an application would have.
func TestStoreShared(t *testing.T) {
	t.Parallel()
	a, b := newPool(t, nil), newPool(t, nil)
	storetest.RunShared(t, func(t *testing.T) (atauth.Store, atauth.Store) {
		schema := newSchema(t, a)
		return pgstore.New(a, pgstore.WithSchema(schema)), pgstore.New(b, pgstore.WithSchema(schema))
	})
}

// countRows returns the number of rows in table of schema.
func countRows(t *testing.T, pool *pgxpool.Pool, schema, table string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&n)
	if err != nil {
		t.Fatalf("counting rows of %s: %v", table, err)
	}
	return n
}

func TestPurgeRemovesRows(t *testing.T) {
	t.Parallel()
	pool := newPool(t, nil)
	schema := newSchema(t, pool)
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	s := pgstore.New(pool, pgstore.WithSchema(schema), pgstore.WithClock(func() time.Time { return clock }))

	for _, id := range []string{"expired", "live"} {
		exp := now.Add(time.Minute)
		if id == "expired" {
			exp = now.Add(time.Second)
		}
		rec := atauth.SessionRecord{ID: id, DID: "did:plc:x", Kind: atauth.KindBrowser, CreatedAt: now, ExpiresAt: exp}
		if err := s.CreateSession(ctx, rec); err != nil {
			t.Fatalf("CreateSession(%q): %v", id, err)
		}
		if err := s.PutOnce(ctx, id, []byte("v"), exp); err != nil {
			t.Fatalf("PutOnce(%q): %v", id, err)
		}
		if err := s.AcquireLease(ctx, id, "owner", exp.Sub(now)); err != nil {
			t.Fatalf("AcquireLease(%q): %v", id, err)
		}
	}
	tables := []string{"atauth_sessions", "atauth_once_values", "atauth_leases"}
	for _, table := range tables {
		if got := countRows(t, pool, schema, table); got != 2 {
			t.Fatalf("rows in %s before purge: got %d, want 2", table, got)
		}
	}

	clock = now.Add(2 * time.Second)
	n, err := s.PurgeExpired(ctx)
	if err != nil || n != 3 {
		t.Errorf("PurgeExpired: got %d, %v, want 3, nil", n, err)
	}
	for _, table := range tables {
		if got := countRows(t, pool, schema, table); got != 1 {
			t.Errorf("rows in %s after purge: got %d, want 1", table, got)
		}
	}
	if n, err := s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Errorf("second PurgeExpired: got %d, %v, want 0, nil", n, err)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	pool := newPool(t, nil)
	schema := newSchema(t, pool) // migrated once already
	s := pgstore.New(pool, pgstore.WithSchema(schema))
	ctx := context.Background()

	// Several instances starting at once all migrate.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate %d: got %v, want nil", i, err)
		}
	}
	if got := countRows(t, pool, schema, "atauth_schema_version"); got != 1 {
		t.Errorf("rows in atauth_schema_version: got %d, want 1", got)
	}
}

// TestSchemaByHand applies Schema() as a team running its own migrations
// would, then checks that the store works and Migrate has nothing to do.
func TestSchemaByHand(t *testing.T) {
	t.Parallel()
	pool := newPool(t, nil)
	ctx := context.Background()
	schema := "atauth_test_" + strings.ToLower(rand.Text()[:16])
	ident := pgx.Identifier{schema}.Sanitize()
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			t.Errorf("dropping test schema: %v", err)
		}
	})
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, sql := range []string{"CREATE SCHEMA " + ident, "SET LOCAL search_path TO " + ident, pgstore.Schema()} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("applying schema.sql: %v", err)
	}
	s := pgstore.New(pool, pgstore.WithSchema(schema))
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after schema.sql: got %v, want nil", err)
	}
	if got := countRows(t, pool, schema, "atauth_schema_version"); got != 1 {
		t.Errorf("rows in atauth_schema_version: got %d, want 1", got)
	}
	if err := s.PutOnce(ctx, "k", []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Errorf("PutOnce: got %v, want nil", err)
	}
}

func TestLeaseFence(t *testing.T) {
	t.Parallel()
	pool := newPool(t, nil)
	ctx := context.Background()
	now := time.Now()
	clock := now
	s := pgstore.New(pool, pgstore.WithSchema(newSchema(t, pool)), pgstore.WithClock(func() time.Time { return clock }))

	acquire := func(owner string) int64 {
		t.Helper()
		f, err := s.AcquireLeaseFence(ctx, "k", owner, time.Minute)
		if err != nil {
			t.Fatalf("AcquireLeaseFence by %s: got %v, want nil", owner, err)
		}
		return f
	}
	f1 := acquire("alice")
	if f := acquire("alice"); f != f1 {
		t.Errorf("fence after the owner extended: got %d, want %d", f, f1)
	}
	if _, err := s.AcquireLeaseFence(ctx, "k", "bob", time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Errorf("AcquireLeaseFence by another owner: got %v, want ErrLeaseHeld", err)
	}
	clock = now.Add(2 * time.Minute) // alice's lease lapses
	f2 := acquire("bob")
	if f2 <= f1 {
		t.Errorf("fence after a takeover: got %d, want more than %d", f2, f1)
	}
	if err := s.ReleaseLease(ctx, "k", "bob"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if f3 := acquire("alice"); f3 <= f2 {
		t.Errorf("fence after release and a new acquisition: got %d, want more than %d", f3, f2)
	}
}

// queryCounter counts the queries and prepares a connection sends.
type queryCounter struct {
	queries, prepares atomic.Int64
}

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *queryCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.prepares.Add(1)
	return ctx
}

func (c *queryCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TestGetSessionOneRoundTrip checks that a warm GetSession sends one query
// and prepares nothing.
func TestGetSessionOneRoundTrip(t *testing.T) {
	t.Parallel()
	counter := new(queryCounter)
	pool := newPool(t, func(cfg *pgxpool.Config) {
		cfg.MaxConns = 1
		cfg.ConnConfig.Tracer = counter
	})
	s := pgstore.New(pool, pgstore.WithSchema(newSchema(t, pool)))
	ctx := context.Background()
	now := time.Now()
	rec := atauth.SessionRecord{ID: "id", DID: "did:plc:x", Kind: atauth.KindBrowser, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if _, err := s.GetSession(ctx, rec.ID); err != nil { // warms the statement cache
		t.Fatalf("GetSession: %v", err)
	}
	q, p := counter.queries.Load(), counter.prepares.Load()
	for range 3 {
		if _, err := s.GetSession(ctx, rec.ID); err != nil {
			t.Fatalf("GetSession: %v", err)
		}
	}
	if got := counter.queries.Load() - q; got != 3 {
		t.Errorf("queries for 3 GetSession calls: got %d, want 3", got)
	}
	if got := counter.prepares.Load() - p; got != 0 {
		t.Errorf("prepares for 3 warm GetSession calls: got %d, want 0", got)
	}
}
