package pgstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atauth/atauth"
)

//go:embed schema.sql
var schemaSQL string

//go:embed schema_2.sql
var schema2SQL string

// Schema returns the SQL that Migrate applies to an empty database: the
// contents of schema.sql and of the later migrations, schema_2.sql, in
// order. Teams that manage their own migrations can apply it themselves, in
// one transaction, and never call Migrate.
func Schema() string { return schemaSQL + "\n" + schema2SQL }

// migration is one step of the schema. Each records its version in
// atauth_schema_version: version 1 inserts it, and from version 2 on each
// replaces the row of the version before, so the table holds the version
// the schema is at.
type migration struct {
	version int
	sql     string
}

// migrations returns the steps Migrate applies in order. A version, once
// released, never changes: an application may have applied it already.
func migrations() []migration {
	return []migration{{1, schemaSQL}, {2, schema2SQL}}
}

// migrateLockID is the advisory lock that serializes Migrate across
// processes: CREATE TABLE IF NOT EXISTS is not safe against a concurrent
// CREATE of the same table.
const migrateLockID = 0x61746175746801 // "atauth" + 1

// uniqueViolation is the SQLSTATE of a unique constraint violation.
const uniqueViolation = "23505"

// Store is an atauth.Store on PostgreSQL. It is safe for concurrent use by
// several goroutines and by several processes sharing one database. Create
// one with New.
type Store struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	schema string
	q      queries
}

var _ atauth.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithSchema makes the Store use the tables in the named PostgreSQL schema
// instead of those found through the connection's search_path. Migrate
// creates the schema if it does not exist.
func WithSchema(name string) Option {
	return func(s *Store) { s.schema = name }
}

// WithClock makes the Store use now, instead of time.Now, to decide which
// records have expired and when a lease ends.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store that uses pool. It does not touch the database: call
// Migrate once at startup, or apply SchemaSQL yourself.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.q = buildQueries(s.table)
	return s
}

// table returns the SQL name of table, qualified with the Store's schema.
func (s *Store) table(name string) string {
	if s.schema == "" {
		return name
	}
	return pgx.Identifier{s.schema, name}.Sanitize()
}

// queries holds the Store's SQL, built once by New.
type queries struct {
	create, get, update, version, delete, byGroup, byDID string
	putOnce, takeOnce, acquire, release, purge           string
	idle                                                 string
}

const sessionColumns = "id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed"

func buildQueries(table func(string) string) queries {
	sessions, once, leases := table("atauth_sessions"), table("atauth_once_values"), table("atauth_leases")
	r := strings.NewReplacer("{sessions}", sessions, "{once}", once, "{leases}", leases, "{cols}", sessionColumns)
	return queries{
		// An expired session with the same id is replaced; a live one
		// makes the statement change nothing, which is the conflict.
		create: r.Replace(`INSERT INTO {sessions} ({cols})
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12)
			ON CONFLICT (id) DO UPDATE SET
				did = excluded.did, handle = excluded.handle, kind = excluded.kind,
				group_id = excluded.group_id, name = excluded.name, prefix = excluded.prefix,
				scopes = excluded.scopes, created_at = excluded.created_at,
				expires_at = excluded.expires_at, last_used_at = excluded.last_used_at,
				version = 1, sealed = excluded.sealed
			WHERE {sessions}.expires_at <= $13`),
		get: r.Replace(`SELECT {cols} FROM {sessions} WHERE id = $1 AND expires_at > $2`),
		update: r.Replace(`UPDATE {sessions} SET
				did = $3, handle = $4, kind = $5, group_id = $6, name = $7, prefix = $8,
				scopes = $9, created_at = $10, expires_at = $11, last_used_at = $12, sealed = $13,
				version = $2 + 1
			WHERE id = $1 AND version = $2 AND expires_at > $14`),
		version: r.Replace(`SELECT version FROM {sessions} WHERE id = $1 AND expires_at > $2`),
		delete:  r.Replace(`DELETE FROM {sessions} WHERE id = $1`),
		// group_id <> '' lets the planner use the partial index.
		byGroup: r.Replace(`SELECT {cols} FROM {sessions}
			WHERE group_id = $1 AND group_id <> '' AND expires_at > $2
			ORDER BY created_at, id COLLATE "C"`),
		byDID: r.Replace(`SELECT {cols} FROM {sessions}
			WHERE did = $1 AND kind = $2 AND expires_at > $3
			ORDER BY created_at, id COLLATE "C"`),
		// atauth_sessions_last_used_idx serves the range and the order.
		idle: r.Replace(`SELECT {cols} FROM {sessions}
			WHERE last_used_at < $1 AND expires_at > $2
			ORDER BY last_used_at, id COLLATE "C"
			LIMIT $3`),
		putOnce: r.Replace(`INSERT INTO {once} (key, value, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`),
		takeOnce: r.Replace(`DELETE FROM {once} WHERE key = $1 RETURNING value, expires_at`),
		// The lease changes hands only when it is free or expired; its
		// owner may extend it. The fence changes only with the owner.
		acquire: r.Replace(`INSERT INTO {leases} AS l (key, owner, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET
				owner = excluded.owner,
				expires_at = excluded.expires_at,
				fence = CASE WHEN l.owner = excluded.owner THEN l.fence ELSE excluded.fence END
			WHERE l.owner = excluded.owner OR l.expires_at <= $4
			RETURNING fence`),
		release: r.Replace(`DELETE FROM {leases} WHERE key = $1 AND owner = $2`),
		purge: r.Replace(`WITH
				s AS (DELETE FROM {sessions} WHERE expires_at <= $1 RETURNING 1),
				o AS (DELETE FROM {once} WHERE expires_at <= $1 RETURNING 1),
				l AS (DELETE FROM {leases} WHERE expires_at <= $1 RETURNING 1)
			SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM o) + (SELECT count(*) FROM l)`),
	}
}

// Migrate creates the schema (if WithSchema named one), the tables and the
// indexes, or brings them up to date. It is idempotent, and safe to call from
// several processes at once: an advisory lock serializes them.
func (s *Store) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockID)); err != nil {
			return err
		}
		if s.schema != "" {
			ident := pgx.Identifier{s.schema}.Sanitize()
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
				return err
			}
			// SET LOCAL ends with the transaction, so the pooled connection
			// goes back unchanged.
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
				return err
			}
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('atauth_schema_version') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		current := 0
		if exists {
			if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM atauth_schema_version").Scan(&current); err != nil {
				return err
			}
		}
		for _, m := range migrations() {
			if m.version <= current {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %d: %w", m.version, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("atauth: pgstore: migrate: %w", err)
	}
	return nil
}

// CreateSession implements atauth.Store.
func (s *Store) CreateSession(ctx context.Context, rec atauth.SessionRecord) error {
	tag, err := s.pool.Exec(ctx, s.q.create,
		rec.ID, rec.DID, rec.Handle, string(rec.Kind), rec.GroupID, rec.Name, rec.Prefix, rec.Scopes,
		rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, nonNil(rec.Sealed), s.now())
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
			return atauth.ErrConflict
		}
		return wrap("create session", err)
	}
	if tag.RowsAffected() == 0 {
		return atauth.ErrConflict
	}
	return nil
}

// GetSession implements atauth.Store. It is one round trip: a single SELECT,
// whose prepared statement pgx caches per connection.
func (s *Store) GetSession(ctx context.Context, id string) (atauth.SessionRecord, error) {
	rec, err := scanSession(s.pool.QueryRow(ctx, s.q.get, id, s.now()))
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
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
	now := s.now()
	tag, err := s.pool.Exec(ctx, s.q.update,
		rec.ID, rec.Version, rec.DID, rec.Handle, string(rec.Kind), rec.GroupID, rec.Name, rec.Prefix,
		rec.Scopes, rec.CreatedAt, rec.ExpiresAt, rec.LastUsedAt, nonNil(rec.Sealed), now)
	if err != nil {
		return wrap("update session", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var v int64
	err = s.pool.QueryRow(ctx, s.q.version, rec.ID, now).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return atauth.ErrNotFound
	case err != nil:
		return wrap("update session", err)
	}
	return atauth.ErrConflict
}

// DeleteSession implements atauth.Store.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, s.q.delete, id); err != nil {
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
	return s.list(ctx, "list sessions by group", s.q.byGroup, groupID, s.now())
}

// ListSessionsByDID implements atauth.Store.
func (s *Store) ListSessionsByDID(ctx context.Context, did string, kind atauth.SessionKind) ([]atauth.SessionRecord, error) {
	return s.list(ctx, "list sessions by DID", s.q.byDID, did, string(kind), s.now())
}

var _ atauth.IdleSessionLister = (*Store)(nil)

// ListIdleSessions implements atauth.IdleSessionLister. It returns up to
// limit live sessions last used before usedBefore, least recently used
// first, through the index on last_used_at; a negative limit means no
// limit.
func (s *Store) ListIdleSessions(ctx context.Context, usedBefore time.Time, limit int) ([]atauth.SessionRecord, error) {
	var n any // NULL is LIMIT ALL
	if limit >= 0 {
		n = int64(limit)
	}
	return s.list(ctx, "list idle sessions", s.q.idle, usedBefore, s.now(), n)
}

func (s *Store) list(ctx context.Context, op, sql string, args ...any) ([]atauth.SessionRecord, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
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
	if _, err := s.pool.Exec(ctx, s.q.putOnce, key, nonNil(value), expiresAt); err != nil {
		return wrap("put one-time value", err)
	}
	return nil
}

// TakeOnce implements atauth.Store. DELETE … RETURNING makes the take atomic:
// of several concurrent callers only one deletes the row. An expired value
// is deleted too, and reported as ErrNotFound.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	var expiresAt time.Time
	err := s.pool.QueryRow(ctx, s.q.takeOnce, key).Scan(&value, &expiresAt)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, atauth.ErrNotFound
		}
		return nil, wrap("take one-time value", err)
	}
	if !s.now().Before(expiresAt) {
		return nil, atauth.ErrNotFound
	}
	return value, nil
}

// AcquireLease implements atauth.Store.
func (s *Store) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) error {
	_, err := s.AcquireLeaseFence(ctx, key, owner, ttl)
	return err
}

// AcquireLeaseFence is AcquireLease that also returns the lease's fencing
// token: a number that grows every time the lease passes to a new owner
// (and stays the same while one owner extends it). A holder can hand it to
// a system that rejects writes carrying a token lower than one it has seen,
// so that a holder whose lease lapsed unnoticed, during a long GC pause for
// example, cannot overwrite its successor's work. atauth itself does not need
// it: its writes are compare-and-swap on the session version, which fences
// them already.
func (s *Store) AcquireLeaseFence(ctx context.Context, key, owner string, ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, errors.New("atauth: pgstore: lease ttl must be positive")
	}
	now := s.now()
	var fence int64
	err := s.pool.QueryRow(ctx, s.q.acquire, key, owner, now.Add(ttl), now).Scan(&fence)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, atauth.ErrLeaseHeld
		}
		return 0, wrap("acquire lease", err)
	}
	return fence, nil
}

// ReleaseLease implements atauth.Store.
func (s *Store) ReleaseLease(ctx context.Context, key, owner string) error {
	if _, err := s.pool.Exec(ctx, s.q.release, key, owner); err != nil {
		return wrap("release lease", err)
	}
	return nil
}

// PurgeExpired implements atauth.Store. It deletes from the three tables in
// one statement, using the expires_at indexes.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, s.q.purge, s.now()).Scan(&n); err != nil {
		return 0, wrap("purge expired records", err)
	}
	return int(n), nil
}

// scanSession reads the columns of sessionColumns.
func scanSession(row pgx.Row) (atauth.SessionRecord, error) {
	var rec atauth.SessionRecord
	var kind string
	err := row.Scan(&rec.ID, &rec.DID, &rec.Handle, &kind, &rec.GroupID, &rec.Name, &rec.Prefix,
		&rec.Scopes, &rec.CreatedAt, &rec.ExpiresAt, &rec.LastUsedAt, &rec.Version, &rec.Sealed)
	rec.Kind = atauth.SessionKind(kind)
	return rec, err
}

// nonNil returns b, or an empty slice for nil: pgx sends a nil slice as
// NULL, and the bytea columns are NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func wrap(op string, err error) error {
	return fmt.Errorf("atauth: pgstore: %s: %w", op, err)
}
