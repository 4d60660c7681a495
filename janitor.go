package atauth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// janitorBatch bounds how many idle sessions one janitor pass refreshes.
const janitorBatch = 500

// PurgeExpired deletes expired sessions and one-time records (pending flows,
// exchange tokens, leases) from the Store, and reports how many it removed.
func (m *Manager) PurgeExpired(ctx context.Context) (int, error) {
	n, err := m.store.PurgeExpired(ctx)
	if err != nil {
		m.emit(ctx, Event{Type: EventStoreError, Err: err})
		return n, storeErr("purge", err)
	}
	return n, nil
}

// RefreshIdle refreshes up to limit sessions whose grant has not been used
// for half the inactivity limit, so that the authorization server does not
// let their refresh tokens die: developer tokens above all, which may sit
// unused for weeks. It needs a Store that implements IdleSessionLister, and
// reports how many sessions it kept alive. A session whose grant was
// refused ends, as on any refresh.
func (m *Manager) RefreshIdle(ctx context.Context, limit int) (int, error) {
	lister, ok := m.store.(IdleSessionLister)
	if !ok {
		return 0, fmt.Errorf("%w: the Store cannot list idle sessions", errors.ErrUnsupported)
	}
	recs, err := lister.ListIdleSessions(ctx, m.now().Add(-m.cfg.InactivityLimit/2), limit)
	if err != nil {
		m.emit(ctx, Event{Type: EventStoreError, Err: err})
		return 0, storeErr("list idle sessions", err)
	}
	kept := 0
	var errs []error
	for _, rec := range recs {
		g, err := m.loadGrant(ctx, rec.ID)
		if err == nil {
			// Passing the current token as stale forces the refresh.
			_, err = m.refresh(ctx, rec.ID, g.sec.AccessToken)
		}
		switch {
		case err == nil:
			kept++
		case errors.Is(err, ErrSessionExpired):
		default:
			errs = append(errs, err)
		}
	}
	return kept, errors.Join(errs...)
}

// RunJanitor purges expired records and keeps idle sessions alive every
// interval until ctx is done, then returns ctx's error. atauth starts no
// goroutine of its own: run it in one of yours,
//
//	go m.RunJanitor(ctx, 5*time.Minute)
//
// Several instances may run it at once; refreshes stay single. With a Store
// that cannot list idle sessions it only purges.
func (m *Manager) RunJanitor(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("%w: janitor interval must be positive", ErrInvalidInput)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.janitorPass(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (m *Manager) janitorPass(ctx context.Context) {
	if n, err := m.PurgeExpired(ctx); err != nil {
		m.log.WarnContext(ctx, "atauth: janitor: purge failed", "err", err)
	} else if n > 0 {
		m.log.InfoContext(ctx, "atauth: janitor: purged expired records", "count", n)
	}
	if _, ok := m.store.(IdleSessionLister); !ok {
		return
	}
	if n, err := m.RefreshIdle(ctx, janitorBatch); err != nil {
		m.log.WarnContext(ctx, "atauth: janitor: refreshing idle sessions failed", "kept_alive", n, "err", err)
	} else if n > 0 {
		m.log.InfoContext(ctx, "atauth: janitor: kept idle sessions alive", "count", n)
	}
}
