// Package testenv tells tests where the real database servers are.
//
// Adapter tests read the servers' addresses from environment variables.
// Where a variable is unset the test is skipped with a message saying how to
// run it, except under CI (CI=true), where a missing server fails the run:
// CI must never pass by skipping the tests it exists to run.
package testenv

import (
	"os"
	"testing"
)

// Environment variables naming the test servers.
const (
	PostgresVar = "ATAUTH_TEST_POSTGRES" // e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
	RedisVar    = "ATAUTH_TEST_REDIS"    // e.g. 127.0.0.1:6379
	MariaDBVar  = "ATAUTH_TEST_MARIADB"  // e.g. root@tcp(127.0.0.1:3306)/test
)

// Postgres returns the PostgreSQL connection string for tests.
func Postgres(tb testing.TB) string {
	return lookup(tb, PostgresVar, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// Redis returns the Redis address for tests.
func Redis(tb testing.TB) string { return lookup(tb, RedisVar, "127.0.0.1:6379") }

// MariaDB returns the MariaDB data source name for tests.
func MariaDB(tb testing.TB) string { return lookup(tb, MariaDBVar, "root@tcp(127.0.0.1:3306)/test") }

func lookup(tb testing.TB, name, example string) string {
	tb.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if InCI() {
		tb.Fatalf("%s is not set, and CI=true: the CI script must provide the server", name)
	}
	tb.Skipf("skipping: set %s=%s to run this test against a real server", name, example)
	return ""
}

// InCI reports whether the tests run under CI, where a missing or
// unreachable server is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unreachable reports a server that is configured but does not answer: a
// failure under CI, a skip elsewhere.
func Unreachable(tb testing.TB, name string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is unreachable under CI: %v", name, err)
	}
	tb.Skipf("skipping: %s is unreachable: %v", name, err)
}
