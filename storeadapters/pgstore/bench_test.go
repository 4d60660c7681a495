package pgstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/pgstore"
)

// benchStore returns a store on a fresh schema holding one session, and
// the session's ID.
func benchStore(b *testing.B) (*pgxpool.Pool, string, *pgstore.Store, string) {
	pool := newPool(b, nil)
	schema := newSchema(b, pool)
	s := pgstore.New(pool, pgstore.WithSchema(schema))
	now := time.Now()
	rec := atauth.SessionRecord{
		ID: sessionID(1), DID: "did:plc:ewvi7nxzyoun6zhxrhs64oiz", Handle: "alice.example.com",
		Kind: atauth.KindBrowser, Scopes: "atproto transition:generic",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastUsedAt: now,
		Sealed: make([]byte, 600), // about the size of a sealed token set and DPoP key
	}
	if err := s.CreateSession(context.Background(), rec); err != nil {
		b.Fatalf("CreateSession: %v", err)
	}
	return pool, schema, s, rec.ID
}

// sessionID returns a store key like the ones atauth writes: the hex
// SHA-256 of a session id.
func sessionID(i int) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(i)))
	return hex.EncodeToString(sum[:])
}

func BenchmarkGetSession(b *testing.B) {
	_, _, s, id := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareRead reads the row BenchmarkGetSession reads, with the same
// SELECT, straight through pgx: the floor GetSession is measured against.
func BenchmarkBareRead(b *testing.B) {
	pool, schema, _, id := benchStore(b)
	ctx := context.Background()
	sql := `SELECT id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed
		FROM ` + pgx.Identifier{schema, "atauth_sessions"}.Sanitize() + ` WHERE id = $1 AND expires_at > $2`
	b.ReportAllocs()
	for b.Loop() {
		var rec atauth.SessionRecord
		var kind string
		err := pool.QueryRow(ctx, sql, id, time.Now()).Scan(&rec.ID, &rec.DID, &rec.Handle, &kind, &rec.GroupID,
			&rec.Name, &rec.Prefix, &rec.Scopes, &rec.CreatedAt, &rec.ExpiresAt, &rec.LastUsedAt, &rec.Version, &rec.Sealed)
		if err != nil {
			b.Fatal(err)
		}
		rec.Kind = atauth.SessionKind(kind)
	}
}

// BenchmarkGetSessionMillion loads 1,000,000 sessions and reports the
// latency of GetSession on random ones. It takes a minute or so, so it runs
// only with ATAUTH_BENCH_MILLION=1:
//
//	ATAUTH_BENCH_MILLION=1 go test -run '^$' -bench GetSessionMillion ./storeadapters/pgstore/
func BenchmarkGetSessionMillion(b *testing.B) {
	if os.Getenv("ATAUTH_BENCH_MILLION") != "1" {
		b.Skip("skipping: set ATAUTH_BENCH_MILLION=1 to load 1,000,000 sessions and measure GetSession")
	}
	const n = 1_000_000
	pool := newPool(b, nil)
	schema := newSchema(b, pool)
	s := pgstore.New(pool, pgstore.WithSchema(schema))
	ctx := context.Background()

	start := time.Now()
	now := time.Now()
	sealed := make([]byte, 600)
	rows := pgx.CopyFromSlice(n, func(i int) ([]any, error) {
		group := ""
		if i%4 == 0 {
			group = fmt.Sprintf("group-%d", i/4)
		}
		return []any{sessionID(i), fmt.Sprintf("did:plc:user%07d", i/3), "user.example.com", string(atauth.KindBrowser),
			group, "", "", "atproto transition:generic", now, now.Add(time.Hour), now, int64(1), sealed}, nil
	})
	cols := []string{"id", "did", "handle", "kind", "group_id", "name", "prefix", "scopes",
		"created_at", "expires_at", "last_used_at", "version", "sealed"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "atauth_sessions"}, cols, rows); err != nil {
		b.Fatalf("CopyFrom: %v", err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "atauth_sessions"}.Sanitize()); err != nil {
		b.Fatalf("ANALYZE: %v", err)
	}
	b.Logf("loaded %d sessions in %v", n, time.Since(start).Round(time.Millisecond))

	b.Run("GetSession", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			id := sessionID(rand.IntN(n))
			t0 := time.Now()
			if _, err := s.GetSession(ctx, id); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
	})
}
