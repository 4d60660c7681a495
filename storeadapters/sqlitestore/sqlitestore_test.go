package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/sqlitestore"
	"github.com/atauth/atauth/storetest"
)

// open opens a store on path, closed when tb ends.
func open(tb testing.TB, path string, opts ...sqlitestore.Option) *sqlitestore.Store {
	tb.Helper()
	s, err := sqlitestore.Open(path, opts...)
	if err != nil {
		tb.Fatalf("Open(%q): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func tempDB(tb testing.TB) string {
	return filepath.Join(tb.TempDir(), "atauth.db")
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) atauth.Store {
		return open(t, tempDB(t))
	})
}

// TestStoreShared runs the shared suite on two Stores that opened one file
// separately, as two processes would.
func TestStoreShared(t *testing.T) {
	t.Parallel()
	storetest.RunShared(t, func(t *testing.T) (atauth.Store, atauth.Store) {
		path := tempDB(t)
		return open(t, path), open(t, path)
	})
}

// rawDB opens path with the pragmas New documents.
func rawDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)")
	if err != nil {
		tb.Fatalf("sql.Open: %v", err)
	}
	// As New advises: a connection per waiting writer would only add
	// pollers for SQLite's one write lock.
	db.SetMaxOpenConns(4)
	tb.Cleanup(func() { db.Close() })
	return db
}

// TestStoreNew runs the suite on a Store made by New on the caller's own
// database handle.
func TestStoreNew(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) atauth.Store {
		s, err := sqlitestore.New(rawDB(t, tempDB(t)))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("counting rows of %s: %v", table, err)
	}
	return n
}

func TestPurgeRemovesRows(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	s := open(t, path, sqlitestore.WithClock(func() time.Time { return clock }))
	ctx := context.Background()

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
	db := rawDB(t, path)
	tables := []string{"atauth_sessions", "atauth_once_values", "atauth_leases"}
	for _, table := range tables {
		if got := countRows(t, db, table); got != 2 {
			t.Fatalf("rows in %s before purge: got %d, want 2", table, got)
		}
	}

	clock = now.Add(2 * time.Second)
	n, err := s.PurgeExpired(ctx)
	if err != nil || n != 3 {
		t.Errorf("PurgeExpired: got %d, %v, want 3, nil", n, err)
	}
	for _, table := range tables {
		if got := countRows(t, db, table); got != 1 {
			t.Errorf("rows in %s after purge: got %d, want 1", table, got)
		}
	}
	if n, err := s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Errorf("second PurgeExpired: got %d, %v, want 0, nil", n, err)
	}
}

// TestOpenConcurrently opens one new file from several goroutines at once,
// as instances starting together would: each migrates, and the schema is
// applied once.
func TestOpenConcurrently(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := sqlitestore.Open(path)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: got %v, want nil", i, err)
		}
	}
	db := rawDB(t, path)
	if got := countRows(t, db, "atauth_schema_version"); got != 1 {
		t.Errorf("rows in atauth_schema_version: got %d, want 1", got)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode: got %q, %v, want wal", mode, err)
	}
}

func TestOpenRefusesNonFiles(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := sqlitestore.Open(path); err == nil {
			s.Close()
			t.Errorf("Open(%q): got nil error, want an error", path)
		}
	}
}

func TestTimes(t *testing.T) {
	t.Parallel()
	s := open(t, tempDB(t))
	ctx := context.Background()
	now := time.Now()

	// The zero time, which a record may hold in LastUsedAt, round-trips.
	rec := atauth.SessionRecord{ID: "zero", DID: "did:plc:x", Kind: atauth.KindBrowser, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	got, err := s.GetSession(ctx, rec.ID)
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if !got.LastUsedAt.IsZero() || !got.CreatedAt.Equal(now) {
		t.Errorf("GetSession: got LastUsedAt %v and CreatedAt %v, want the zero time and %v", got.LastUsedAt, got.CreatedAt, now)
	}

	// A time whose nanoseconds overflow is an error, not a wrong value.
	far := rec
	far.ID = "far"
	far.ExpiresAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateSession(ctx, far); err == nil {
		t.Errorf("CreateSession expiring in the year 3000: got nil error, want an error")
	}
}

// TestProcesses runs takers in separate processes on one file: each
// one-time value goes to exactly one of them, and a lease held by one
// excludes the others.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts processes")
	}
	t.Parallel()
	path := tempDB(t)
	s := open(t, path)
	ctx := context.Background()
	const keys, procs = 50, 3
	for i := range keys {
		if err := s.PutOnce(ctx, fmt.Sprint("k", i), []byte(fmt.Sprint(i)), time.Now().Add(time.Minute)); err != nil {
			t.Fatalf("PutOnce: %v", err)
		}
	}
	if err := s.AcquireLease(ctx, "lease", "parent", time.Minute); err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}

	outs := make([]string, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for p := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), "ATAUTH_SQLITE_HELPER_DB="+path, "ATAUTH_SQLITE_HELPER_KEYS="+strconv.Itoa(keys))
			out, err := cmd.CombinedOutput()
			outs[p], errs[p] = string(out), err
		})
	}
	wg.Wait()

	taken := make(map[string]int)
	for p := range procs {
		if errs[p] != nil {
			t.Fatalf("helper process %d: %v\n%s", p, errs[p], outs[p])
		}
		for line := range strings.Lines(outs[p]) {
			if k, ok := strings.CutPrefix(strings.TrimSpace(line), "took "); ok {
				taken[k]++
			}
		}
	}
	for i := range keys {
		if k := fmt.Sprint("k", i); taken[k] != 1 {
			t.Errorf("processes that took %s: got %d, want 1", k, taken[k])
		}
	}
}

// TestHelperProcess is the body of TestProcesses's child processes.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("ATAUTH_SQLITE_HELPER_DB")
	if path == "" {
		t.Skip("skipping: run by TestProcesses")
	}
	keys, _ := strconv.Atoi(os.Getenv("ATAUTH_SQLITE_HELPER_KEYS"))
	s := open(t, path)
	ctx := context.Background()
	if err := s.AcquireLease(ctx, "lease", fmt.Sprint("child", os.Getpid()), time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Errorf("AcquireLease of the parent's lease: got %v, want ErrLeaseHeld", err)
	}
	for i := range keys {
		k := fmt.Sprint("k", i)
		v, err := s.TakeOnce(ctx, k)
		switch {
		case err == nil && string(v) == fmt.Sprint(i):
			fmt.Printf("took %s\n", k)
		case err == nil:
			t.Errorf("TakeOnce(%q): got %q, want %q", k, v, fmt.Sprint(i))
		case !errors.Is(err, atauth.ErrNotFound):
			t.Errorf("TakeOnce(%q): got %v, want nil or ErrNotFound", k, err)
		}
	}
}
