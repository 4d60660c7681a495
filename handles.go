package atauth

import (
	"context"
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// maxHandleCacheEntries bounds the handle cache; past it the cache starts
// over, which costs lookups, never correctness.
const maxHandleCacheEntries = 100_000

// handleCache remembers when each DID's handle was last verified, so that
// /auth/me follows handle changes without resolving on every request.
type handleCache struct {
	mu      sync.Mutex
	entries map[string]handleEntry
}

type handleEntry struct {
	handle  string
	checked time.Time
}

func (c *handleCache) get(did string) (handleEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[did]
	return e, ok
}

func (c *handleCache) put(did, handle string, checked time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxHandleCacheEntries {
		c.entries = make(map[string]handleEntry)
	}
	c.entries[did] = handleEntry{handle: handle, checked: checked}
}

// currentHandle returns did's handle, verified again from its DID document
// when the last check is older than Config.HandleRefreshInterval. When
// the directory cannot answer, the stored handle stands: a directory outage
// must not break who-am-I.
func (m *Manager) currentHandle(ctx context.Context, did, stored string) string {
	if m.cfg.HandleRefreshInterval < 0 {
		return stored
	}
	now := m.now()
	if e, ok := m.handles.get(did); ok && now.Sub(e.checked) < m.cfg.HandleRefreshInterval {
		return e.handle
	}
	ident, err := m.resolver.LookupDID(ctx, syntax.DID(did))
	if err != nil {
		m.log.InfoContext(ctx, "atauth: could not re-verify a handle", "did", did, "err", err)
		m.handles.put(did, stored, now)
		return stored
	}
	m.handles.put(did, ident.Handle, now)
	return ident.Handle
}

// refreshHandle updates s, and its record, when the account's handle
// changed. The record update is a single compare-and-swap: losing it to a
// concurrent writer only defers the update to the next check.
func (m *Manager) refreshHandle(ctx context.Context, s *Session) {
	handle := m.currentHandle(ctx, s.DID, s.Handle)
	if handle == s.Handle {
		return
	}
	s.Handle = handle
	rec, err := m.store.GetSession(ctx, s.storeID)
	if err != nil {
		return
	}
	rec.Handle = handle
	if err := m.store.UpdateSession(ctx, rec); err != nil {
		m.log.InfoContext(ctx, "atauth: could not store a changed handle", "did", s.DID, "err", err)
	}
}
