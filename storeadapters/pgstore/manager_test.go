package pgstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/managertest"
	"github.com/atauth/atauth/storeadapters/pgstore"
)

// TestManagers runs the multi-instance scenarios with a connection pool of
// its own per Manager, on one schema.
//
// It does not run in parallel: a thousand PDS calls at once keep the CPUs
// busy, and would slow the outage tests past their patience.
func TestManagers(t *testing.T) {
	admin := newPool(t, nil)
	managertest.Run(t, func(t *testing.T, n int) []atauth.Store {
		schema := newSchema(t, admin)
		stores := make([]atauth.Store, n)
		for i := range stores {
			stores[i] = pgstore.New(newPool(t, nil), pgstore.WithSchema(schema))
		}
		return stores
	})
}

// TestManagerOutage cuts the network between a Manager's Store and
// PostgreSQL, through a proxy of the test's own, while browsers sign in.
func TestManagerOutage(t *testing.T) {
	t.Parallel()
	admin := newPool(t, nil)
	schema := newSchema(t, admin)
	dsn, prx := viaProxy(t)
	pool := newPoolAt(t, dsn, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	})
	managertest.RunOutage(t, managertest.Outage{
		Store:   pgstore.New(pool, pgstore.WithSchema(schema)),
		Direct:  pgstore.New(admin, pgstore.WithSchema(schema)),
		Cut:     prx.Cut,
		Restore: prx.Restore,
	})
}

// TestManagerAddAccountCut cuts the network to PostgreSQL between the two
// writes of an add-account.
func TestManagerAddAccountCut(t *testing.T) {
	t.Parallel()
	admin := newPool(t, nil)
	schema := newSchema(t, admin)
	dsn, prx := viaProxy(t)
	pool := newPoolAt(t, dsn, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	})
	managertest.RunAddAccountCut(t, managertest.Outage{
		Store:   pgstore.New(pool, pgstore.WithSchema(schema)),
		Direct:  pgstore.New(admin, pgstore.WithSchema(schema)),
		Cut:     prx.Cut,
		Restore: prx.Restore,
	})
}

// TestAuthenticateOneRoundTrip checks that authenticating a request is one
// query to PostgreSQL, prepared once per connection.
func TestAuthenticateOneRoundTrip(t *testing.T) {
	t.Parallel()
	counter := new(queryCounter)
	pool := newPool(t, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = counter })
	m, id := managertest.SignedIn(t, pgstore.New(pool, pgstore.WithSchema(newSchema(t, pool))))
	req := managertest.CookieRequest(id)
	// Warm every connection's statement cache.
	for range 2 * pool.Config().MaxConns {
		if _, err := m.Authenticate(req); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
	}
	q, p := counter.queries.Load(), counter.prepares.Load()
	const n = 20
	for range n {
		if _, err := m.Authenticate(req); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
	}
	if got := counter.queries.Load() - q; got != n {
		t.Errorf("queries for %d authentications: got %d, want %d", n, got, n)
	}
	if got := counter.prepares.Load() - p; got != 0 {
		t.Errorf("prepares for %d warm authentications: got %d, want 0", n, got)
	}
}

// TestMigrateFromVersion1 applies version 1 of the schema, as an
// application may have, holding a session, and checks that Migrate brings
// it to version 2 with the index ListIdleSessions uses, keeping the row.
func TestMigrateFromVersion1(t *testing.T) {
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
	v1, err := os.ReadFile("schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, sql := range []string{"CREATE SCHEMA " + ident, "SET LOCAL search_path TO " + ident, string(v1)} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("applying version 1: %v", err)
	}
	s := pgstore.New(pool, pgstore.WithSchema(schema))
	now := time.Now()
	rec := atauth.SessionRecord{ID: "old", DID: "did:plc:x", Kind: atauth.KindBrowser, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), LastUsedAt: now.Add(-time.Hour)}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatalf("CreateSession on version 1: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from version 1: %v", err)
	}
	var versions []int
	rows, _ := pool.Query(ctx, "SELECT version FROM "+pgx.Identifier{schema, "atauth_schema_version"}.Sanitize())
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || !slices.Equal(versions, []int{2}) {
		t.Errorf("atauth_schema_version after Migrate: got %v, %v, want [2]", versions, err)
	}
	var index bool
	err = pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", schema+".atauth_sessions_last_used_idx").Scan(&index)
	if err != nil || !index {
		t.Errorf("index on last_used_at after Migrate: got %v, %v, want it to exist", index, err)
	}
	idle, err := s.ListIdleSessions(ctx, now, 10)
	if err != nil || len(idle) != 1 || idle[0].ID != "old" {
		t.Errorf("ListIdleSessions after Migrate: got %d sessions, %v, want [old]", len(idle), err)
	}
}

// BenchmarkAuthenticate compares Manager.Authenticate of a cookie request,
// for a session created by a real sign-in, with pgx's own read of the same
// row, in the same run:
//
//	go test -run '^$' -bench 'BenchmarkAuthenticate$' ./storeadapters/pgstore/
func BenchmarkAuthenticate(b *testing.B) {
	counter := new(queryCounter)
	pool := newPool(b, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = counter })
	schema := newSchema(b, pool)
	m, id := managertest.SignedIn(b, pgstore.New(pool, pgstore.WithSchema(schema)))
	managertest.CompareAuthenticate(b, m, id, bareRead(pool, schema), counter.queries.Load)
}

// bareRead returns a read of one session row straight through pgx, with
// the SELECT GetSession sends.
func bareRead(pool *pgxpool.Pool, schema string) func(context.Context, string) error {
	sql := `SELECT id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed
		FROM ` + pgx.Identifier{schema, "atauth_sessions"}.Sanitize() + ` WHERE id = $1 AND expires_at > $2`
	return func(ctx context.Context, key string) error {
		var rec atauth.SessionRecord
		var kind string
		return pool.QueryRow(ctx, sql, key, time.Now()).Scan(&rec.ID, &rec.DID, &rec.Handle, &kind, &rec.GroupID,
			&rec.Name, &rec.Prefix, &rec.Scopes, &rec.CreatedAt, &rec.ExpiresAt, &rec.LastUsedAt, &rec.Version, &rec.Sealed)
	}
}

// millionSessions is how many sessions BenchmarkAuthenticateMillion loads.
const millionSessions = 1_000_000

// BenchmarkAuthenticateMillion loads 1,000,000 sessions shaped like the one
// a real sign-in writes, and measures Manager.Authenticate on random ones:
// round trips per request, and the p50 and p99 latency. Loading takes a
// minute or so, so it runs only with ATAUTH_BENCH_MILLION=1:
//
//	ATAUTH_BENCH_MILLION=1 go test -run '^$' -bench AuthenticateMillion -timeout 30m ./storeadapters/pgstore/
func BenchmarkAuthenticateMillion(b *testing.B) {
	if os.Getenv("ATAUTH_BENCH_MILLION") != "1" {
		b.Skip("skipping: set ATAUTH_BENCH_MILLION=1 to load 1,000,000 sessions and measure Authenticate")
	}
	counter := new(queryCounter)
	pool := newPool(b, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = counter })
	schema := newSchema(b, pool)
	store := pgstore.New(pool, pgstore.WithSchema(schema))
	m, id := managertest.SignedIn(b, store)
	ctx := context.Background()
	signedIn, err := store.GetSession(ctx, managertest.StoreKey(id))
	if err != nil {
		b.Fatal(err)
	}

	// Session ids as the Manager mints them: 32 random bytes, base64url.
	// The row id is their hex SHA-256. A sample of ids stays in memory.
	const sampleSize = 10_000
	sample := make([]string, 0, sampleSize)
	rng := mrand.NewChaCha8([32]byte{1})
	sealed := make([]byte, len(signedIn.Sealed)) // Authenticate never opens it
	rng.Read(sealed)
	now := time.Now()
	start := time.Now()
	cols := []string{"id", "did", "handle", "kind", "group_id", "name", "prefix", "scopes",
		"created_at", "expires_at", "last_used_at", "version", "sealed"}
	i := 0
	rows := pgx.CopyFromFunc(func() ([]any, error) {
		if i == millionSessions {
			return nil, nil
		}
		var raw [32]byte
		rng.Read(raw[:])
		sid := base64.RawURLEncoding.EncodeToString(raw[:])
		if i%(millionSessions/sampleSize) == 0 {
			sample = append(sample, sid)
		}
		sum := sha256.Sum256([]byte(sid))
		group := ""
		if i%4 == 0 {
			group = hex.EncodeToString(raw[:]) // about a quarter of browsers hold several accounts
		}
		did := fmt.Sprintf("did:plc:%024d", i/2)
		created := now.Add(-time.Duration(i%(24*3600)) * time.Second)
		row := []any{hex.EncodeToString(sum[:]), did, fmt.Sprintf("user%d.bsky.social", i/2), string(atauth.KindBrowser),
			group, "", "", signedIn.Scopes, created, created.Add(7 * 24 * time.Hour), now, int64(1), sealed}
		i++
		return row, nil
	})
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "atauth_sessions"}, cols, rows); err != nil {
		b.Fatalf("CopyFrom: %v", err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "atauth_sessions"}.Sanitize()); err != nil {
		b.Fatalf("ANALYZE: %v", err)
	}
	b.Logf("loaded %d sessions of %d sealed bytes in %v", millionSessions, len(sealed), time.Since(start).Round(time.Millisecond))

	reqs := make([]*http.Request, len(sample))
	for j, sid := range sample {
		reqs[j] = managertest.CookieRequest(sid)
	}
	b.Run("Authenticate", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		q := counter.queries.Load()
		for b.Loop() {
			req := reqs[mrand.IntN(len(reqs))]
			t0 := time.Now()
			s, err := m.Authenticate(req)
			lat = append(lat, time.Since(t0))
			if err != nil || s.DID == "" {
				b.Fatalf("Authenticate: %v", err)
			}
		}
		b.ReportMetric(float64(counter.queries.Load()-q)/float64(b.N), "roundtrips/op")
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
	})
}
