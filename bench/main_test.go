package bench

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain silences slog's default logger: indigo's oauth package logs
// every nonce challenge and failed refresh there at Warn, and offers no
// way to inject a logger.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
