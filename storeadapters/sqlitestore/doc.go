// Package sqlitestore is an [atauth.Store] in an SQLite database file,
// through modernc.org/sqlite: pure Go, no cgo. It is the embedded default for
// an application on one machine: sessions survive restarts, and several
// processes on the machine may share the file.
//
// Open a file, and close it at shutdown:
//
//	store, err := sqlitestore.Open("/var/lib/myapp/atauth.db")
//	if err != nil { … }
//	defer store.Close()
//	mgr, err := atauth.New(atauth.Config{Store: store, …})
//
// An application that already has an SQLite handle passes it to [New]
// instead; its documentation lists the pragmas the handle needs.
//
// # Schema
//
// Open and New apply schema.sql and the migrations after it (schema_2.sql),
// which [Schema] returns together, in one BEGIN IMMEDIATE transaction, and
// record the version in atauth_schema_version, so opening is idempotent and
// processes opening one file at once apply each migration once. The tables
// are atauth_sessions, atauth_once_values and atauth_leases, STRICT, with
// indexes for the lookups atauth makes (by group, by DID and kind, by
// expiry, and by last use for [Store.ListIdleSessions]). A session's fields are real columns; only the
// sealed column holds encrypted data. Times are INTEGER Unix nanoseconds,
// which compare without parsing and carry no time zone; the zero time.Time
// is stored as 0, and times outside the years 1678 to 2262 are refused.
//
// # Clock
//
// Expiry is decided with the Go clock (time.Now, or the function given to
// [WithClock]), passed to every query, the same clock atauth writes
// ExpiresAt from. Processes sharing a file share the machine's clock.
//
// # Concurrency
//
// The database is in WAL mode, so reads run alongside a write, with
// synchronous=NORMAL and a busy timeout of [BusyTimeout]. Every write is a
// single atomic statement: CreateSession is an INSERT … ON CONFLICT that
// replaces only an expired row; UpdateSession is an UPDATE guarded by the
// version column; TakeOnce is DELETE … RETURNING, so of many concurrent
// takers, in any process, one gets the row; AcquireLease is an INSERT … ON
// CONFLICT DO UPDATE that changes owner only when the lease is free or
// expired. A Store made by Open reads through a pool of connections and
// writes through one, so that its own writes queue in Go rather than poll
// for SQLite's lock; writers in other processes wait through the busy
// timeout. GetSession is one SELECT on the primary key.
//
// PurgeExpired deletes the expired rows of all three tables in one
// transaction; run it every few minutes.
package sqlitestore
