// Package customstore is an [atauth.Store] written from scratch on MariaDB
// (or MySQL 8) through database/sql and github.com/go-sql-driver/mysql. It
// is an example to read and copy: README.md in this directory walks through
// it, method by method, and shows how to check your own store with
// storetest.
//
//	db, err := sql.Open("mysql", "app:secret@tcp(127.0.0.1:3306)/app?parseTime=true")
//	store := customstore.New(db)
//	err = store.Migrate(ctx)
//	mgr, err := atauth.New(atauth.Config{ /* ... */ Store: store})
//
// Call PurgeExpired every few minutes: rows past their expiry are invisible
// at once, but stay on disk until it deletes them.
package customstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/atauth/atauth"
)

// Store is an atauth.Store on a MariaDB database. It is safe for concurrent
// use, and several processes may share one database.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

var _ atauth.Store = (*Store)(nil)

// New returns a Store on db. The connection must parse times
// (parseTime=true in the data source name); Migrate checks that. The Store
// does not close db.
func New(db *sql.DB) *Store {
	return &Store{db: db, now: time.Now}
}

// schema creates the three tables.
//
// Keys, ids, DIDs and owners are VARBINARY: they are opaque bytes, and a
// binary column compares them byte for byte. A VARCHAR with the default
// collation would find "A" equal to "a", and "a " equal to "a".
//
// Times are DATETIME(6): microseconds, readable by an operator, and indexed.
// The driver writes a time.Time in its location (UTC unless the DSN sets
// loc) and reads it back in the same location, so the instant survives. The
// Store compares them with a "now" it passes in, never with NOW(): the
// application's clock is the one that decides, whatever the server's time
// zone.
var schema = []string{`
CREATE TABLE IF NOT EXISTS atauth_sessions (
	id           VARBINARY(128)  NOT NULL,
	did          VARBINARY(2048) NOT NULL,
	kind         VARBINARY(32)   NOT NULL,
	group_id     VARBINARY(255)  NOT NULL,
	handle       VARCHAR(253)    NOT NULL,
	name         VARCHAR(255)    NOT NULL,
	prefix       VARCHAR(64)     NOT NULL,
	scopes       TEXT            NOT NULL,
	created_at   DATETIME(6)     NOT NULL,
	expires_at   DATETIME(6)     NOT NULL,
	last_used_at DATETIME(6)     NOT NULL,
	version      BIGINT          NOT NULL,
	sealed       MEDIUMBLOB,
	PRIMARY KEY (id),
	KEY by_group (group_id, created_at),
	KEY by_did (did, kind, created_at),
	KEY by_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`, `
CREATE TABLE IF NOT EXISTS atauth_once (
	id         VARBINARY(128) NOT NULL,
	value      MEDIUMBLOB,
	expires_at DATETIME(6)    NOT NULL,
	PRIMARY KEY (id),
	KEY by_expiry (expires_at)
) ENGINE=InnoDB`, `
CREATE TABLE IF NOT EXISTS atauth_leases (
	id         VARBINARY(128) NOT NULL,
	owner      VARBINARY(255) NOT NULL,
	expires_at DATETIME(6)    NOT NULL,
	PRIMARY KEY (id),
	KEY by_expiry (expires_at)
) ENGINE=InnoDB`,
}

// Migrate creates the Store's tables if they do not exist, after checking
// that the connection parses times.
func (s *Store) Migrate(ctx context.Context) error {
	var t time.Time
	err := s.db.QueryRowContext(ctx, "SELECT CAST('2000-01-01' AS DATETIME(6))").Scan(&t)
	if err != nil {
		return fmt.Errorf("atauth: customstore: reading a DATETIME (is parseTime=true set in the DSN?): %w", err)
	}
	for _, stmt := range schema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("atauth: customstore: migrate: %w", err)
		}
	}
	return nil
}

// sessionColumns lists the columns of atauth_sessions in the order
// scanSession reads them.
const sessionColumns = `id, did, kind, group_id, handle, name, prefix, scopes,
	created_at, expires_at, last_used_at, version, sealed`

// scanSession reads one row of sessionColumns.
func scanSession(row interface{ Scan(...any) error }) (atauth.SessionRecord, error) {
	var rec atauth.SessionRecord
	err := row.Scan(&rec.ID, &rec.DID, &rec.Kind, &rec.GroupID, &rec.Handle, &rec.Name,
		&rec.Prefix, &rec.Scopes, &rec.CreatedAt, &rec.ExpiresAt, &rec.LastUsedAt,
		&rec.Version, &rec.Sealed)
	return rec, err
}

// isDuplicateKey reports whether err is MariaDB's "duplicate entry" error.
func isDuplicateKey(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062 // ER_DUP_ENTRY
}

// CreateSession implements atauth.Store. It first deletes an expired session
// with the same id, which must not block the new one, then inserts; the
// primary key turns a live session with the same id into ErrConflict, even
// when two processes create at once.
func (s *Store) CreateSession(ctx context.Context, rec atauth.SessionRecord) error {
	now := s.now()
	_, err := s.db.ExecContext(ctx,
		`DELETE FROM atauth_sessions WHERE id = ? AND expires_at <= ?`, rec.ID, now)
	if err != nil {
		return fmt.Errorf("atauth: customstore: create session: %w", err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO atauth_sessions (`+sessionColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)`,
		rec.ID, rec.DID, rec.Kind, rec.GroupID, rec.Handle, rec.Name, rec.Prefix, rec.Scopes,
		rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, rec.Sealed)
	if isDuplicateKey(err) {
		return atauth.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("atauth: customstore: create session: %w", err)
	}
	return nil
}

// GetSession implements atauth.Store.
func (s *Store) GetSession(ctx context.Context, id string) (atauth.SessionRecord, error) {
	row := s.db.QueryRowContext(ctx,
		`SELECT `+sessionColumns+` FROM atauth_sessions WHERE id = ? AND expires_at > ?`,
		id, s.now())
	rec, err := scanSession(row)
	if errors.Is(err, sql.ErrNoRows) {
		return atauth.SessionRecord{}, atauth.ErrNotFound
	}
	if err != nil {
		return atauth.SessionRecord{}, fmt.Errorf("atauth: customstore: get session: %w", err)
	}
	return rec, nil
}

// UpdateSession implements atauth.Store as a compare-and-swap: the UPDATE
// matches only the version the caller read. When it changes no row, a second
// query tells a missing session from a changed one.
func (s *Store) UpdateSession(ctx context.Context, rec atauth.SessionRecord) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx,
		`UPDATE atauth_sessions SET
			did = ?, kind = ?, group_id = ?, handle = ?, name = ?, prefix = ?, scopes = ?,
			created_at = ?, expires_at = ?, last_used_at = ?, sealed = ?,
			version = version + 1
		WHERE id = ? AND version = ? AND expires_at > ?`,
		rec.DID, rec.Kind, rec.GroupID, rec.Handle, rec.Name, rec.Prefix, rec.Scopes,
		rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, rec.Sealed,
		rec.ID, rec.Version, now)
	if err != nil {
		return fmt.Errorf("atauth: customstore: update session: %w", err)
	}
	// The driver reports rows changed, not rows matched, but version
	// always changes, so 1 means the swap happened.
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("atauth: customstore: update session: %w", err)
	} else if n == 1 {
		return nil
	}
	var version int64
	err = s.db.QueryRowContext(ctx,
		`SELECT version FROM atauth_sessions WHERE id = ? AND expires_at > ?`,
		rec.ID, now).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		return atauth.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("atauth: customstore: update session: %w", err)
	}
	return atauth.ErrConflict
}

// DeleteSession implements atauth.Store.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM atauth_sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("atauth: customstore: delete session: %w", err)
	}
	return nil
}

// ListSessionsByGroup implements atauth.Store.
func (s *Store) ListSessionsByGroup(ctx context.Context, groupID string) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if groupID == "" {
		// Sessions in no group have group_id '', which is not a group.
		return []atauth.SessionRecord{}, nil
	}
	return s.list(ctx,
		`SELECT `+sessionColumns+` FROM atauth_sessions
		WHERE group_id = ? AND expires_at > ? ORDER BY created_at, id`,
		groupID, s.now())
}

// ListSessionsByDID implements atauth.Store.
func (s *Store) ListSessionsByDID(ctx context.Context, did string, kind atauth.SessionKind) ([]atauth.SessionRecord, error) {
	return s.list(ctx,
		`SELECT `+sessionColumns+` FROM atauth_sessions
		WHERE did = ? AND kind = ? AND expires_at > ? ORDER BY created_at, id`,
		did, kind, s.now())
}

// list runs a query of sessionColumns and collects the rows.
func (s *Store) list(ctx context.Context, query string, args ...any) ([]atauth.SessionRecord, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("atauth: customstore: list sessions: %w", err)
	}
	defer rows.Close()
	out := []atauth.SessionRecord{} // empty, not nil, when nothing matches
	for rows.Next() {
		rec, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("atauth: customstore: list sessions: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("atauth: customstore: list sessions: %w", err)
	}
	return out, nil
}

// PutOnce implements atauth.Store. A value already expired is stored like
// any other: TakeOnce and PurgeExpired treat it as gone.
func (s *Store) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO atauth_once (id, value, expires_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE value = VALUES(value), expires_at = VALUES(expires_at)`,
		key, value, expiresAt)
	if err != nil {
		return fmt.Errorf("atauth: customstore: put once: %w", err)
	}
	return nil
}

// TakeOnce implements atauth.Store. SELECT … FOR UPDATE locks the row, so
// of several takers one reads it and deletes it; the others wait for the
// lock, then find no row. The returned slice belongs to the caller.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("atauth: customstore: take once: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit

	var value []byte
	var expiresAt time.Time
	err = tx.QueryRowContext(ctx,
		`SELECT value, expires_at FROM atauth_once WHERE id = ? FOR UPDATE`, key).Scan(&value, &expiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, atauth.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("atauth: customstore: take once: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM atauth_once WHERE id = ?`, key); err != nil {
		return nil, fmt.Errorf("atauth: customstore: take once: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("atauth: customstore: take once: %w", err)
	}
	// An expired value is deleted all the same, and reported missing.
	if !expiresAt.After(s.now()) {
		return nil, atauth.ErrNotFound
	}
	return value, nil
}

// AcquireLease implements atauth.Store with one upsert: it inserts the
// lease, or takes over the row when the caller already owns it or it has
// expired, and leaves it alone otherwise. Reading the owner back tells which
// happened.
func (s *Store) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("atauth: customstore: lease ttl must be positive")
	}
	now := s.now()
	// MariaDB applies the assignments in order, so the second sees the owner
	// the first chose: the expiry moves only if the caller now holds the
	// lease.
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO atauth_leases (id, owner, expires_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE
			owner = IF(owner = VALUES(owner) OR expires_at <= ?, VALUES(owner), owner),
			expires_at = IF(owner = VALUES(owner), VALUES(expires_at), expires_at)`,
		key, owner, now.Add(ttl), now)
	if err != nil {
		return fmt.Errorf("atauth: customstore: acquire lease: %w", err)
	}
	// Only an expiry can change the owner between the two statements, and
	// then the lease is indeed no longer the caller's.
	var holder string
	err = s.db.QueryRowContext(ctx, `SELECT owner FROM atauth_leases WHERE id = ?`, key).Scan(&holder)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("atauth: customstore: acquire lease: %w", err)
	}
	if holder != owner {
		return atauth.ErrLeaseHeld
	}
	return nil
}

// ReleaseLease implements atauth.Store.
func (s *Store) ReleaseLease(ctx context.Context, key, owner string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM atauth_leases WHERE id = ? AND owner = ?`, key, owner)
	if err != nil {
		return fmt.Errorf("atauth: customstore: release lease: %w", err)
	}
	return nil
}

// purgeBatch is how many rows one DELETE of PurgeExpired removes at most, so
// that no statement holds its locks for long.
const purgeBatch = 1000

// PurgeExpired implements atauth.Store.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	now := s.now()
	total := 0
	for _, table := range []string{"atauth_sessions", "atauth_once", "atauth_leases"} {
		for {
			res, err := s.db.ExecContext(ctx,
				`DELETE FROM `+table+` WHERE expires_at <= ? LIMIT ?`, now, purgeBatch)
			if err != nil {
				return total, fmt.Errorf("atauth: customstore: purge %s: %w", table, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("atauth: customstore: purge %s: %w", table, err)
			}
			total += int(n)
			if n < purgeBatch {
				break
			}
		}
	}
	return total, nil
}
