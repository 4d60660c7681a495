package customstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/testenv"
	"github.com/atauth/atauth/storetest"
)

// testServer returns the configuration of the test MariaDB after checking
// that it answers. It skips or fails tb, as testenv decides, when there is
// none.
func testServer(tb testing.TB) *mysql.Config {
	tb.Helper()
	cfg, err := mysql.ParseDSN(testenv.MariaDB(tb))
	if err != nil {
		tb.Fatalf("parsing %s: %v", testenv.MariaDBVar, err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		testenv.Unreachable(tb, "MariaDB", err)
	}
	return cfg
}

// openTestDB creates a database of its own for tb on server, migrated and
// dropped when tb ends, so that tests can run in parallel. It returns the
// database's name and a pool on it.
func openTestDB(tb testing.TB, server *mysql.Config) (string, *sql.DB) {
	tb.Helper()
	admin, err := sql.Open("mysql", server.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { admin.Close() })
	name := "atauth_test_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name); err != nil {
			tb.Errorf("dropping the test database: %v", err)
		}
	})
	db := openDB(tb, server, name, true)
	if err := New(db).Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return name, db
}

// openDB opens a pool on the database name of server, closed when tb ends.
func openDB(tb testing.TB, server *mysql.Config, name string, parseTime bool) *sql.DB {
	tb.Helper()
	cfg := server.Clone()
	cfg.DBName = name
	cfg.ParseTime = parseTime
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	// The contention checks run 64 callers at once; keep well under the
	// server's max_connections with several tests in parallel.
	db.SetMaxOpenConns(16)
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	server := testServer(t)
	storetest.Run(t, func(t *testing.T) atauth.Store {
		_, db := openTestDB(t, server)
		return New(db)
	})
}

// TestShared gives each Store of a pair a connection pool of its own on one
// database, as two processes would have.
func TestShared(t *testing.T) {
	server := testServer(t)
	storetest.RunShared(t, func(t *testing.T) (atauth.Store, atauth.Store) {
		name, db := openTestDB(t, server)
		return New(db), New(openDB(t, server, name, true))
	})
}

// TestMigrateNeedsParseTime checks that Migrate refuses a connection that
// would fail to read every time later.
func TestMigrateNeedsParseTime(t *testing.T) {
	server := testServer(t)
	name, db := openTestDB(t, server)
	raw := openDB(t, server, name, false)
	if err := New(raw).Migrate(context.Background()); err == nil {
		t.Errorf("Migrate without parseTime: got nil, want an error")
	}
	// Migrating twice is harmless.
	if err := New(db).Migrate(context.Background()); err != nil {
		t.Errorf("second Migrate: got %v, want nil", err)
	}
}

// TestZeroTimes checks that a record whose CreatedAt and LastUsedAt were
// never set reads back with zero times, outside DATETIME's documented range.
func TestZeroTimes(t *testing.T) {
	ctx := context.Background()
	_, db := openTestDB(t, testServer(t))
	s := New(db)
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
