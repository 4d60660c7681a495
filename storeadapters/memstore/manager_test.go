package memstore

import (
	"testing"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/managertest"
)

// TestManagers runs the multi-instance scenarios on handles made with
// Share, one per Manager.
func TestManagers(t *testing.T) {
	managertest.Run(t, func(t *testing.T, n int) []atauth.Store {
		s := New()
		stores := []atauth.Store{s}
		for len(stores) < n {
			stores = append(stores, s.Share())
		}
		return stores
	})
}
