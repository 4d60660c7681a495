// Package pgstore is an [atauth.Store] on PostgreSQL, through
// github.com/jackc/pgx/v5. It suits applications that already run
// PostgreSQL and deploy more than one instance: every instance sees the same
// sessions, and leases, one-time values and compare-and-swap hold across
// them.
//
// Use it with a pgxpool.Pool, and migrate once at startup:
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	// handle err
//	store := pgstore.New(pool)
//	if err := store.Migrate(ctx); err != nil { … }
//	mgr, err := atauth.New(atauth.Config{Store: store, …})
//
// # Schema
//
// Migrate applies schema.sql and the migrations after it (schema_2.sql),
// which [Schema] returns together: the tables atauth_sessions,
// atauth_once_values, atauth_leases and atauth_schema_version, with indexes
// for the lookups atauth makes (by group, by DID and kind, by expiry, and by
// last use for [Store.ListIdleSessions]). The table names carry an atauth_
// prefix so that they do not collide with an application's own "sessions".
// A session's fields are real columns an operator can query; only the sealed
// column holds encrypted data. Teams that run their own migrations apply
// Schema() in one transaction instead of calling Migrate; each statement is
// idempotent, and the version the schema is at is recorded in
// atauth_schema_version so that later versions of this package can migrate
// on from it. [WithSchema] puts the
// tables in a PostgreSQL schema of their own.
//
// # Clock
//
// The Store decides expiry with the Go clock of the process (time.Now, or
// the function given to [WithClock]), passed to every query as a parameter,
// never with the database's now(). atauth writes ExpiresAt from the same Go
// clock, so a record expires exactly when the Manager that wrote it expects,
// and tests can drive expiry with a fake clock. The cost is that instances
// sharing a database must keep their clocks synchronized (NTP): a lease
// taken by an instance whose clock runs ahead ends early in the eyes of the
// others. Leases in atauth last longer than a refresh call by a wide margin,
// so a skew of a few hundred milliseconds is harmless.
//
// # Concurrency
//
// Every operation is a single statement, so each is atomic without an
// explicit transaction: CreateSession is an INSERT … ON CONFLICT that
// replaces only an expired row; UpdateSession is an UPDATE guarded by the
// version column (a second query, on failure only, tells ErrConflict from
// ErrNotFound); TakeOnce is DELETE … RETURNING, so of many concurrent takers
// one gets the row; AcquireLease is an INSERT … ON CONFLICT DO UPDATE that
// changes owner only when the lease is free or expired. Leases carry a
// fencing token, see [Store.AcquireLeaseFence]. GetSession, the read on every
// authenticated request, is one SELECT and one round trip: pgx prepares it
// once per connection and caches it (the default QueryExecModeCacheStatement).
// PurgeExpired deletes the expired rows of all three tables in one statement;
// run it every few minutes.
package pgstore
