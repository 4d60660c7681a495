package sqlitestore

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/atauth/atauth"
)

//go:embed schema.sql
var schemaSQL string

//go:embed schema_2.sql
var schema2SQL string

// Schema returns the SQL that Open and New apply to an empty database: the
// contents of schema.sql and of the later migrations, schema_2.sql, in
// order.
func Schema() string { return schemaSQL + "\n" + schema2SQL }

// migration is one step of the schema. Each records its version in
// atauth_schema_version: version 1 inserts it, and from version 2 on each
// replaces the row of the version before, so the table holds the version
// the schema is at.
type migration struct {
	version int
	sql     string
}

// migrations returns the steps applied in order. A version, once released,
// never changes: an application may have applied it already.
func migrations() []migration {
	return []migration{{1, schemaSQL}, {2, schema2SQL}}
}

// BusyTimeout is how long a connection that Open makes waits for another
// connection's write lock, in this process or another, before it fails with
// SQLITE_BUSY.
const BusyTimeout = 5 * time.Second

// dsnParams are the connection parameters Open uses; see New for why each
// matters. busy_timeout is BusyTimeout in milliseconds.
const dsnParams = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(1)&_txlock=immediate"

// Store is an atauth.Store on an SQLite database file. It is safe for
// concurrent use, and several Stores, in one process or several, may share
// one file. Create one with Open or New.
type Store struct {
	read   *sql.DB // reads, in parallel
	write  *sql.DB // writes; one connection when Open made it
	closer []*sql.DB
	// get is GetSession's query, prepared once per connection: compiling
	// the SELECT each time would take half of GetSession's time.
	get *sql.Stmt
	now func() time.Time
	q   queries
}

var _ atauth.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock makes the Store use now, instead of time.Now, to decide which
// records have expired and when a lease ends.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Open opens, creating it if needed, the SQLite database file at path, and
// brings its schema up to date. The file is put in WAL mode, so that reads
// do not wait for writes. Call Close when done.
//
// path is a file name, not a URI, and must not contain '?'. ":memory:" is
// refused: the Store opens several connections, and each would see a
// database of its own.
func Open(path string, opts ...Option) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, fmt.Errorf("atauth: sqlitestore: %q is not a plain file name", path)
	}
	dsn := path + "?" + dsnParams
	read, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("atauth: sqlitestore: %w", err)
	}
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		read.Close()
		return nil, fmt.Errorf("atauth: sqlitestore: %w", err)
	}
	// SQLite runs one write at a time per file. Queueing this process's
	// writes on one connection keeps them out of SQLite's busy-wait loop,
	// which polls; writers in other processes still meet the busy timeout.
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)

	s, err := newStore(read, write, opts)
	if err != nil {
		read.Close()
		write.Close()
		return nil, err
	}
	s.closer = []*sql.DB{read, write}
	return s, nil
}

// New returns a Store on db, an SQLite database opened with the
// modernc.org/sqlite driver (or another that speaks SQLite ≥ 3.37), and
// brings its schema up to date. The tables' names begin with atauth_, so db
// may hold an application's own tables too. Close does not close db.
//
// Open db with the pragmas Open uses, for example
//
//	sql.Open("sqlite", "app.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)")
//
// busy_timeout makes a write wait for another connection's write instead of
// failing at once with SQLITE_BUSY; WAL lets reads run alongside a write;
// synchronous=NORMAL is durable in WAL mode except for the last
// transactions before a power loss, and much faster than FULL.
//
// New reads and writes through db. SQLite lets one connection write at a
// time and makes the others poll for the lock, so many concurrent writes on
// a large pool are slower than on the split pools Open makes: limit db to
// a few connections with SetMaxOpenConns.
func New(db *sql.DB, opts ...Option) (*Store, error) {
	return newStore(db, db, opts)
}

func newStore(read, write *sql.DB, opts []Option) (*Store, error) {
	s := &Store{read: read, write: write, now: time.Now, q: buildQueries()}
	for _, o := range opts {
		o(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), BusyTimeout+5*time.Second)
	defer cancel()
	if err := retryBusy(ctx, s.migrate); err != nil {
		return nil, fmt.Errorf("atauth: sqlitestore: migrate: %w", err)
	}
	get, err := read.PrepareContext(ctx, s.q.get)
	if err != nil {
		return nil, fmt.Errorf("atauth: sqlitestore: %w", err)
	}
	s.get = get
	return s, nil
}

// Close releases the Store's prepared statement and closes the database
// handles Open made. It does not close a handle given to New.
func (s *Store) Close() error {
	errs := []error{s.get.Close()}
	for _, db := range s.closer {
		errs = append(errs, db.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("atauth: sqlitestore: close: %w", err)
	}
	return nil
}

// retryBusy runs f until it does not fail with SQLITE_BUSY or ctx ends.
// Processes opening a new file at once contend for the switch to WAL mode,
// which SQLite answers with an immediate SQLITE_BUSY rather than waiting
// out the busy timeout.
func retryBusy(ctx context.Context, f func(context.Context) error) error {
	delay := 5 * time.Millisecond
	for {
		err := f(ctx)
		if !isBusy(err) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (or an extended code
// of it).
func isBusy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 5
}

// migrate applies the migrations the database lacks. BEGIN IMMEDIATE takes
// the write lock before reading the version, so processes opening one file
// at once apply each migration once.
func (s *Store) migrate(ctx context.Context) (err error) {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// A failed statement may already have ended the transaction.
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var exists bool
	err = conn.QueryRowContext(ctx,
		"SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'atauth_schema_version'").Scan(&exists)
	if err != nil {
		return err
	}
	current := 0
	if exists {
		if err := conn.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM atauth_schema_version").Scan(&current); err != nil {
			return err
		}
	}
	for _, m := range migrations() {
		if m.version <= current {
			continue
		}
		if _, err := conn.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %d: %w", m.version, err)
		}
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// queries holds the Store's SQL.
type queries struct {
	create, get, update, version, delete, byGroup, byDID string
	putOnce, takeOnce, acquire, release, idle            string
}

const sessionColumns = "id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed"

func buildQueries() queries {
	r := strings.NewReplacer("{cols}", sessionColumns)
	return queries{
		// An expired session with the same id is replaced; a live one
		// makes the statement change nothing, which is the conflict.
		create: r.Replace(`INSERT INTO atauth_sessions ({cols})
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12)
			ON CONFLICT (id) DO UPDATE SET
				did = excluded.did, handle = excluded.handle, kind = excluded.kind,
				group_id = excluded.group_id, name = excluded.name, prefix = excluded.prefix,
				scopes = excluded.scopes, created_at = excluded.created_at,
				expires_at = excluded.expires_at, last_used_at = excluded.last_used_at,
				version = 1, sealed = excluded.sealed
			WHERE atauth_sessions.expires_at <= ?13`),
		get: r.Replace(`SELECT {cols} FROM atauth_sessions WHERE id = ?1 AND expires_at > ?2`),
		update: `UPDATE atauth_sessions SET
				did = ?3, handle = ?4, kind = ?5, group_id = ?6, name = ?7, prefix = ?8,
				scopes = ?9, created_at = ?10, expires_at = ?11, last_used_at = ?12, sealed = ?13,
				version = ?2 + 1
			WHERE id = ?1 AND version = ?2 AND expires_at > ?14`,
		version: `SELECT version FROM atauth_sessions WHERE id = ?1 AND expires_at > ?2`,
		delete:  `DELETE FROM atauth_sessions WHERE id = ?1`,
		// group_id <> '' lets the planner use the partial index.
		byGroup: r.Replace(`SELECT {cols} FROM atauth_sessions
			WHERE group_id = ?1 AND group_id <> '' AND expires_at > ?2
			ORDER BY created_at, id`),
		byDID: r.Replace(`SELECT {cols} FROM atauth_sessions
			WHERE did = ?1 AND kind = ?2 AND expires_at > ?3
			ORDER BY created_at, id`),
		// atauth_sessions_last_used_idx serves the range and the order. A
		// negative LIMIT is no limit.
		idle: r.Replace(`SELECT {cols} FROM atauth_sessions
			WHERE last_used_at < ?1 AND expires_at > ?2
			ORDER BY last_used_at, id
			LIMIT ?3`),
		putOnce: `INSERT INTO atauth_once_values (key, value, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
		takeOnce: `DELETE FROM atauth_once_values WHERE key = ?1 RETURNING value, expires_at`,
		// The lease changes hands only when it is free or expired; its
		// owner may extend it.
		acquire: `INSERT INTO atauth_leases (key, owner, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			WHERE atauth_leases.owner = excluded.owner OR atauth_leases.expires_at <= ?4`,
		release: `DELETE FROM atauth_leases WHERE key = ?1 AND owner = ?2`,
	}
}

// CreateSession implements atauth.Store.
func (s *Store) CreateSession(ctx context.Context, rec atauth.SessionRecord) error {
	times, err := nanos(rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, s.now())
	if err != nil {
		return wrap("create session", err)
	}
	res, err := s.write.ExecContext(ctx, s.q.create,
		rec.ID, rec.DID, rec.Handle, string(rec.Kind), rec.GroupID, rec.Name, rec.Prefix, rec.Scopes,
		times[0], times[1], times[2], nonNil(rec.Sealed), times[3])
	if err != nil {
		return wrap("create session", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("create session", err)
	} else if n == 0 {
		return atauth.ErrConflict
	}
	return nil
}

// GetSession implements atauth.Store. It is one SELECT on the primary key.
func (s *Store) GetSession(ctx context.Context, id string) (atauth.SessionRecord, error) {
	rec, err := scanSession(s.get.QueryRowContext(ctx, id, s.now().UnixNano()))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return atauth.SessionRecord{}, atauth.ErrNotFound
		}
		return atauth.SessionRecord{}, wrap("get session", err)
	}
	return rec, nil
}

// UpdateSession implements atauth.Store. The version check and the write
// are one UPDATE; only when it changes nothing does a second query tell a
// stale version from a missing session.
func (s *Store) UpdateSession(ctx context.Context, rec atauth.SessionRecord) error {
	times, err := nanos(rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, s.now())
	if err != nil {
		return wrap("update session", err)
	}
	res, err := s.write.ExecContext(ctx, s.q.update,
		rec.ID, rec.Version, rec.DID, rec.Handle, string(rec.Kind), rec.GroupID, rec.Name, rec.Prefix,
		rec.Scopes, times[0], times[1], times[2], nonNil(rec.Sealed), times[3])
	if err != nil {
		return wrap("update session", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("update session", err)
	} else if n == 1 {
		return nil
	}
	var v int64
	err = s.read.QueryRowContext(ctx, s.q.version, rec.ID, times[3]).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return atauth.ErrNotFound
	case err != nil:
		return wrap("update session", err)
	}
	return atauth.ErrConflict
}

// DeleteSession implements atauth.Store.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.write.ExecContext(ctx, s.q.delete, id); err != nil {
		return wrap("delete session", err)
	}
	return nil
}

// ListSessionsByGroup implements atauth.Store.
func (s *Store) ListSessionsByGroup(ctx context.Context, groupID string) ([]atauth.SessionRecord, error) {
	if groupID == "" {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return []atauth.SessionRecord{}, nil
	}
	return s.list(ctx, "list sessions by group", s.q.byGroup, groupID, s.now().UnixNano())
}

// ListSessionsByDID implements atauth.Store.
func (s *Store) ListSessionsByDID(ctx context.Context, did string, kind atauth.SessionKind) ([]atauth.SessionRecord, error) {
	return s.list(ctx, "list sessions by DID", s.q.byDID, did, string(kind), s.now().UnixNano())
}

var _ atauth.IdleSessionLister = (*Store)(nil)

// ListIdleSessions implements atauth.IdleSessionLister. It returns up to
// limit live sessions last used before usedBefore, least recently used
// first, through the index on last_used_at; a negative limit means no
// limit.
func (s *Store) ListIdleSessions(ctx context.Context, usedBefore time.Time, limit int) ([]atauth.SessionRecord, error) {
	t, err := nanos(usedBefore, s.now())
	if err != nil {
		return nil, wrap("list idle sessions", err)
	}
	return s.list(ctx, "list idle sessions", s.q.idle, t[0], t[1], int64(limit))
}

func (s *Store) list(ctx context.Context, op, query string, args ...any) ([]atauth.SessionRecord, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	out := []atauth.SessionRecord{}
	for rows.Next() {
		rec, err := scanSession(rows)
		if err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// PutOnce implements atauth.Store.
func (s *Store) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	exp, err := nanos(expiresAt)
	if err != nil {
		return wrap("put one-time value", err)
	}
	if _, err := s.write.ExecContext(ctx, s.q.putOnce, key, nonNil(value), exp[0]); err != nil {
		return wrap("put one-time value", err)
	}
	return nil
}

// TakeOnce implements atauth.Store. DELETE … RETURNING makes the take atomic:
// of several concurrent callers, in this process or others, only one
// deletes the row. An expired value is deleted too, and reported as
// ErrNotFound.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	var exp int64
	if err := s.write.QueryRowContext(ctx, s.q.takeOnce, key).Scan(&value, &exp); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, atauth.ErrNotFound
		}
		return nil, wrap("take one-time value", err)
	}
	if s.now().UnixNano() >= exp {
		return nil, atauth.ErrNotFound
	}
	return value, nil
}

// AcquireLease implements atauth.Store.
func (s *Store) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("atauth: sqlitestore: lease ttl must be positive")
	}
	now := s.now()
	t, err := nanos(now.Add(ttl), now)
	if err != nil {
		return wrap("acquire lease", err)
	}
	res, err := s.write.ExecContext(ctx, s.q.acquire, key, owner, t[0], t[1])
	if err != nil {
		return wrap("acquire lease", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("acquire lease", err)
	} else if n == 0 {
		return atauth.ErrLeaseHeld
	}
	return nil
}

// ReleaseLease implements atauth.Store.
func (s *Store) ReleaseLease(ctx context.Context, key, owner string) error {
	if _, err := s.write.ExecContext(ctx, s.q.release, key, owner); err != nil {
		return wrap("release lease", err)
	}
	return nil
}

// PurgeExpired implements atauth.Store. It deletes from the three tables in
// one transaction, using the expires_at indexes.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	now := s.now().UnixNano()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, wrap("purge expired records", err)
	}
	defer tx.Rollback()
	total := int64(0)
	for _, table := range []string{"atauth_sessions", "atauth_once_values", "atauth_leases"} {
		res, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE expires_at <= ?1", now)
		if err != nil {
			return 0, wrap("purge expired records", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, wrap("purge expired records", err)
		}
		total += n
	}
	if err := tx.Commit(); err != nil {
		return 0, wrap("purge expired records", err)
	}
	return int(total), nil
}

// scanSession reads the columns of sessionColumns.
func scanSession(row interface{ Scan(...any) error }) (atauth.SessionRecord, error) {
	var rec atauth.SessionRecord
	var kind string
	var created, expires, lastUsed int64
	err := row.Scan(&rec.ID, &rec.DID, &rec.Handle, &kind, &rec.GroupID, &rec.Name, &rec.Prefix,
		&rec.Scopes, &created, &expires, &lastUsed, &rec.Version, &rec.Sealed)
	rec.Kind = atauth.SessionKind(kind)
	rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt = fromNanos(created), fromNanos(expires), fromNanos(lastUsed)
	return rec, err
}

// The Unix seconds a Store can keep: those whose nanoseconds fit in an
// int64, from 1678 to 2262.
const (
	minSec = math.MinInt64/int64(time.Second) + 1
	maxSec = math.MaxInt64/int64(time.Second) - 1
)

// errTimeRange reports a time a Store cannot keep.
var errTimeRange = errors.New("time outside the years 1678 to 2262")

// nanos returns ts as Unix nanoseconds, the zero time as 0.
func nanos(ts ...time.Time) ([4]int64, error) {
	var out [4]int64
	for i, t := range ts {
		switch {
		case t.IsZero():
		case t.Unix() < minSec || t.Unix() > maxSec:
			return out, fmt.Errorf("%w: %v", errTimeRange, t)
		default:
			out[i] = t.UnixNano()
		}
	}
	return out, nil
}

// fromNanos is the inverse of nanos.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// nonNil returns b, or an empty slice for nil, which database/sql would
// store as NULL in a NOT NULL column.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func wrap(op string, err error) error {
	return fmt.Errorf("atauth: sqlitestore: %s: %w", op, err)
}
