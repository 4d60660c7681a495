package sqlitestore_test

import (
	"context"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/managertest"
)

// TestManagers runs the multi-instance scenarios with one Open of a single
// file per Manager, as processes sharing the file would have.
func TestManagers(t *testing.T) {
	managertest.Run(t, func(t *testing.T, n int) []atauth.Store {
		path := tempDB(t)
		stores := make([]atauth.Store, n)
		for i := range stores {
			stores[i] = open(t, path)
		}
		return stores
	})
}

// BenchmarkAuthenticate compares Manager.Authenticate of a cookie request,
// for a session created by a real sign-in, with database/sql's own read of
// the same row through a statement prepared once, in the same run:
//
//	go test -run '^$' -bench 'BenchmarkAuthenticate$' ./storeadapters/sqlitestore/
func BenchmarkAuthenticate(b *testing.B) {
	path := tempDB(b)
	m, id := managertest.SignedIn(b, open(b, path))
	stmt, err := rawDB(b, path).Prepare(bareQuery)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stmt.Close() })
	managertest.CompareAuthenticate(b, m, id, func(ctx context.Context, key string) error {
		var rec atauth.SessionRecord
		var kind string
		var created, expires, lastUsed int64
		return stmt.QueryRowContext(ctx, key, time.Now().UnixNano()).Scan(&rec.ID, &rec.DID, &rec.Handle, &kind,
			&rec.GroupID, &rec.Name, &rec.Prefix, &rec.Scopes, &created, &expires, &lastUsed, &rec.Version, &rec.Sealed)
	}, nil)
}
