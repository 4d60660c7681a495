package sqlitestore_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/sqlitestore"
)

// benchStore returns a store on a new file holding one session, the file's
// path and the session's ID.
func benchStore(b *testing.B) (*sqlitestore.Store, string, string) {
	path := tempDB(b)
	s := open(b, path)
	now := time.Now()
	rec := atauth.SessionRecord{
		ID: "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5", DID: "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
		Handle: "alice.example.com", Kind: atauth.KindBrowser, Scopes: "atproto transition:generic",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastUsedAt: now,
		Sealed: make([]byte, 600), // about the size of a sealed token set and DPoP key
	}
	if err := s.CreateSession(context.Background(), rec); err != nil {
		b.Fatalf("CreateSession: %v", err)
	}
	return s, path, rec.ID
}

func BenchmarkGetSession(b *testing.B) {
	s, _, id := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

const bareQuery = `SELECT id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed
	FROM atauth_sessions WHERE id = ?1 AND expires_at > ?2`

// BenchmarkBareRead reads the row BenchmarkGetSession reads, with the same
// SELECT, straight through database/sql: the floor GetSession is measured
// against.
func BenchmarkBareRead(b *testing.B) {
	_, path, id := benchStore(b)
	db := rawDB(b, path)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		bareRead(b, db.QueryRowContext(ctx, bareQuery, id, time.Now().UnixNano()))
	}
}

// BenchmarkBareReadPrepared is BenchmarkBareRead with the statement
// prepared once, as GetSession has it.
func BenchmarkBareReadPrepared(b *testing.B) {
	_, path, id := benchStore(b)
	db := rawDB(b, path)
	ctx := context.Background()
	stmt, err := db.PrepareContext(ctx, bareQuery)
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	b.ReportAllocs()
	for b.Loop() {
		bareRead(b, stmt.QueryRowContext(ctx, id, time.Now().UnixNano()))
	}
}

func bareRead(b *testing.B, row *sql.Row) {
	var rec atauth.SessionRecord
	var kind string
	var created, expires, lastUsed int64
	err := row.Scan(&rec.ID, &rec.DID, &rec.Handle, &kind,
		&rec.GroupID, &rec.Name, &rec.Prefix, &rec.Scopes, &created, &expires, &lastUsed, &rec.Version, &rec.Sealed)
	if err != nil {
		b.Fatal(err)
	}
	rec.Kind = atauth.SessionKind(kind)
	rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt = time.Unix(0, created), time.Unix(0, expires), time.Unix(0, lastUsed)
}
