package bench

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/sqlite3store"
	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/jackc/pgx/v5"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
	"github.com/atauth/atauth/storeadapters/pgstore"
	"github.com/atauth/atauth/storeadapters/redisstore"
	"github.com/atauth/atauth/storeadapters/sqlitestore"
)

// authFixture is one backend set up for the per-request comparison: an
// atauth Store and an scs Store on the same kind of backend, and each
// one's bare driver read of its own record.
type authFixture struct {
	store    atauth.Store
	bare     func(ctx context.Context, storeKey string) error // reads atauth's row or key
	scsStore scs.Store
	scsBare  func(ctx context.Context, token string) error // reads scs's row or key
}

// authFixtures are the backends of BenchmarkRequest. scs has no store for
// modernc.org/sqlite, but its sqlite3store only needs a *sql.DB, and
// SQLite's SQL: it runs here on the same pure-Go driver as sqlitestore
// (its go.mod names mattn/go-sqlite3, which is never imported).
var authFixtures = []struct {
	name  string
	setup func(b *testing.B) authFixture
}{
	{"memstore", func(b *testing.B) authFixture {
		s := memstore.New()
		ss := scsmem.NewWithCleanupInterval(0)
		return authFixture{
			store: s,
			bare: func(ctx context.Context, key string) error {
				_, err := s.GetSession(ctx, key)
				return err
			},
			scsStore: ss,
			scsBare: func(_ context.Context, token string) error {
				_, _, err := ss.Find(token)
				return err
			},
		}
	}},
	{"sqlite", func(b *testing.B) authFixture {
		dir := b.TempDir()
		path := filepath.Join(dir, "atauth.db")
		s, err := sqlitestore.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		raw := sqliteDB(b, path)
		stmt, err := raw.Prepare(`SELECT id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed
			FROM atauth_sessions WHERE id = ?1 AND expires_at > ?2`)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { stmt.Close() })

		sdb := sqliteDB(b, filepath.Join(dir, "scs.db"))
		if _, err := sdb.Exec(`CREATE TABLE sessions (token TEXT PRIMARY KEY, data BLOB NOT NULL, expiry REAL NOT NULL);
			CREATE INDEX sessions_expiry_idx ON sessions(expiry);`); err != nil {
			b.Fatal(err)
		}
		ss := sqlite3store.NewWithCleanupInterval(sdb, 0)
		return authFixture{
			store: s,
			bare: func(ctx context.Context, key string) error {
				var rec atauth.SessionRecord
				var kind string
				var created, expires, lastUsed int64
				return stmt.QueryRowContext(ctx, key, time.Now().UnixNano()).Scan(&rec.ID, &rec.DID, &rec.Handle, &kind,
					&rec.GroupID, &rec.Name, &rec.Prefix, &rec.Scopes, &created, &expires, &lastUsed, &rec.Version, &rec.Sealed)
			},
			scsStore: ss,
			scsBare: func(_ context.Context, token string) error {
				_, _, err := ss.Find(token)
				return err
			},
		}
	}},
	{"postgres", func(b *testing.B) authFixture {
		schema := pgSchema(b)
		pool := pgPool(b, "")
		s := pgstore.New(pool, pgstore.WithSchema(schema))
		q := `SELECT id, did, handle, kind, group_id, name, prefix, scopes, created_at, expires_at, last_used_at, version, sealed
			FROM ` + pgx.Identifier{schema, "atauth_sessions"}.Sanitize() + ` WHERE id = $1 AND expires_at > $2`
		// scs's pgxstore uses the table "sessions" of the search path.
		spool := pgPool(b, schema)
		if _, err := spool.Exec(context.Background(), `CREATE TABLE sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL);
			CREATE INDEX sessions_expiry_idx ON sessions (expiry);`); err != nil {
			b.Fatal(err)
		}
		ss := pgxstore.NewWithCleanupInterval(spool, 0)
		return authFixture{
			store: s,
			bare: func(ctx context.Context, key string) error {
				var rec atauth.SessionRecord
				var kind string
				return pool.QueryRow(ctx, q, key, time.Now()).Scan(&rec.ID, &rec.DID, &rec.Handle, &kind, &rec.GroupID,
					&rec.Name, &rec.Prefix, &rec.Scopes, &rec.CreatedAt, &rec.ExpiresAt, &rec.LastUsedAt, &rec.Version, &rec.Sealed)
			},
			scsStore: ss,
			scsBare: func(ctx context.Context, token string) error {
				var data []byte
				return spool.QueryRow(ctx, "SELECT data FROM sessions WHERE token = $1 AND current_timestamp < expiry", token).Scan(&data)
			},
		}
	}},
	{"redis", func(b *testing.B) authFixture {
		prefix := redisPrefix(b)
		c := redisClient(b)
		s := redisstore.New(c, redisstore.WithPrefix(prefix))
		sc := redisClient(b)
		ss := goredisstore.NewWithPrefix(sc, prefix+"scs:")
		return authFixture{
			store: s,
			bare: func(ctx context.Context, key string) error {
				return c.Get(ctx, prefix+"s:"+key).Err()
			},
			scsStore: ss,
			scsBare: func(ctx context.Context, token string) error {
				return sc.Get(ctx, prefix+"scs:"+token).Err()
			},
		}
	}},
}

// BenchmarkRequest compares the per-request cost of authentication: atauth's
// RequireAuth middleware, scs's LoadAndSave middleware holding a comparable
// session (DID, handle, scopes and an opaque blob the size of atauth's
// sealed tokens), and each one's bare driver read of its own record. The
// Ratio sub-benchmark interleaves the four so that load weighs on all
// alike.
func BenchmarkRequest(b *testing.B) {
	for _, fx := range authFixtures {
		b.Run(fx.name, func(b *testing.B) {
			f := fx.setup(b)
			ctx := context.Background()

			// atauth: a real sign-in through atauthtest.
			network, alice := newAccount(b)
			m := newManager(b, testConfig(network, f.store, loopbackClient(b)))
			id := signIn(b, m, alice.Handle, approveAt(network, alice))
			rec, err := f.store.GetSession(ctx, storeKey(id))
			if err != nil {
				b.Fatal(err)
			}
			atauthH := m.RequireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if s, ok := atauth.SessionFromContext(r.Context()); !ok || s.DID != alice.DID {
					panic("no session in the context")
				}
			}))
			atauthReq, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api", nil)
			atauthReq.Header.Set("Cookie", "theme=dark; session_id="+id+"; lang=en")

			// scs: the same identity in a session of its own.
			sm := scs.New()
			sm.Store = f.scsStore
			sctx, err := sm.Load(ctx, "")
			if err != nil {
				b.Fatal(err)
			}
			sm.Put(sctx, "did", alice.DID)
			sm.Put(sctx, "handle", alice.Handle)
			sm.Put(sctx, "scopes", rec.Scopes)
			sm.Put(sctx, "tokens", make([]byte, len(rec.Sealed)))
			token, _, err := sm.Commit(sctx)
			if err != nil {
				b.Fatal(err)
			}
			scsH := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if sm.GetString(r.Context(), "did") != alice.DID {
					panic("no session in the context")
				}
			}))
			scsReq, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api", nil)
			scsReq.Header.Set("Cookie", "theme=dark; session="+token+"; lang=en")

			w := &discardWriter{h: http.Header{}}
			key := storeKey(id)
			ops := []struct {
				name string
				op   func()
			}{
				{"Bare", func() {
					if err := f.bare(ctx, key); err != nil {
						b.Fatal(err)
					}
				}},
				{"RequireAuth", func() { clear(w.h); atauthH.ServeHTTP(w, atauthReq) }},
				{"ScsBare", func() {
					if err := f.scsBare(ctx, token); err != nil {
						b.Fatal(err)
					}
				}},
				{"ScsLoadAndSave", func() { clear(w.h); scsH.ServeHTTP(w, scsReq) }},
			}
			for _, o := range ops {
				b.Run(o.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						o.op()
					}
				})
			}
			b.Run("Ratio", func(b *testing.B) {
				var t [4]time.Duration
				for b.Loop() {
					for i, o := range ops {
						t0 := time.Now()
						o.op()
						t[i] += time.Since(t0)
					}
				}
				b.ReportMetric(float64(t[1])/float64(t[0]), "atauth/bare")
				b.ReportMetric(float64(t[3])/float64(t[2]), "scs/scsbare")
				b.ReportMetric(float64(t[1])/float64(t[3]), "atauth/scs")
			})
		})
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
