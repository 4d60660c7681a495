// Package memstore is an in-memory [atauth.Store], the default store of
// atauth.
//
// Its records live in the process: they are lost on restart and not shared
// between processes, so it suits a single instance, development and tests.
// Expired records are invisible at once and removed by PurgeExpired; the
// store starts no goroutines, so call PurgeExpired periodically in a
// long-running process.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/atauth/atauth"
)

// Store is an in-memory atauth.Store. It is safe for concurrent use. Create
// one with New or NewWithClock; the zero value is not usable.
//
// A Store copies every byte slice it is given, so a caller may reuse its
// buffers. The Sealed slice of a record it returns is shared with the store
// and with other callers, and must not be modified: atauth's Manager only
// ever reads it. Sharing it is what lets GetSession run without allocating.
type Store struct {
	b *backend
}

var _ atauth.Store = (*Store)(nil)

type didKind struct {
	did  string
	kind atauth.SessionKind
}

type onceValue struct {
	value     []byte
	expiresAt time.Time
}

type lease struct {
	owner     string
	expiresAt time.Time
}

// backend holds the data. A stored *SessionRecord, and its Sealed slice,
// is never written after it is stored, only replaced, so GetSession can copy
// one out after releasing the lock, without allocating.
type backend struct {
	now func() time.Time

	mu       sync.RWMutex
	sessions map[string]*atauth.SessionRecord
	byGroup  map[string]map[string]struct{}  // GroupID → session IDs
	byDID    map[didKind]map[string]struct{} // (DID, Kind) → session IDs
	once     map[string]onceValue
	leases   map[string]lease
}

// New returns an empty Store that uses the system clock.
func New() *Store {
	return NewWithClock(time.Now)
}

// NewWithClock returns an empty Store that uses now to decide expiry. Tests
// pass a fake clock to expire records without sleeping.
func NewWithClock(now func() time.Time) *Store {
	return &Store{b: &backend{
		now:      now,
		sessions: make(map[string]*atauth.SessionRecord),
		byGroup:  make(map[string]map[string]struct{}),
		byDID:    make(map[didKind]map[string]struct{}),
		once:     make(map[string]onceValue),
		leases:   make(map[string]lease),
	}}
}

// Share returns a second Store on the same data, as a second process would
// see a shared database. Writes through either are visible to both, and
// leases exclude across them.
func (s *Store) Share() *Store {
	return &Store{b: s.b}
}

// live reports whether a record expiring at expiresAt is still visible.
func live(expiresAt, now time.Time) bool {
	return now.Before(expiresAt)
}

// CreateSession implements atauth.Store.
func (s *Store) CreateSession(ctx context.Context, rec atauth.SessionRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec.Version = 1
	rec.Sealed = cloneBytes(rec.Sealed)
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.sessions[rec.ID]; ok {
		if live(old.ExpiresAt, b.now()) {
			return atauth.ErrConflict
		}
		b.unindex(*old)
	}
	b.sessions[rec.ID] = &rec
	b.index(rec)
	return nil
}

// GetSession implements atauth.Store. It does not allocate.
func (s *Store) GetSession(ctx context.Context, id string) (atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return atauth.SessionRecord{}, err
	}
	b := s.b
	b.mu.RLock()
	rec := b.sessions[id]
	b.mu.RUnlock()
	if rec == nil || !live(rec.ExpiresAt, b.now()) {
		return atauth.SessionRecord{}, atauth.ErrNotFound
	}
	return *rec, nil
}

// UpdateSession implements atauth.Store.
func (s *Store) UpdateSession(ctx context.Context, rec atauth.SessionRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec.Sealed = cloneBytes(rec.Sealed)
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.sessions[rec.ID]
	if !ok || !live(old.ExpiresAt, b.now()) {
		return atauth.ErrNotFound
	}
	if old.Version != rec.Version {
		return atauth.ErrConflict
	}
	rec.Version++
	b.unindex(*old)
	b.sessions[rec.ID] = &rec
	b.index(rec)
	return nil
}

// DeleteSession implements atauth.Store.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.sessions[id]; ok {
		b.deleteSession(*old)
	}
	return nil
}

// ListSessionsByGroup implements atauth.Store.
func (s *Store) ListSessionsByGroup(ctx context.Context, groupID string) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.b
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.collect(b.byGroup[groupID]), nil
}

// ListSessionsByDID implements atauth.Store.
func (s *Store) ListSessionsByDID(ctx context.Context, did string, kind atauth.SessionKind) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.b
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.collect(b.byDID[didKind{did, kind}]), nil
}

// collect returns the live sessions among ids, oldest first. b.mu must be
// held.
func (b *backend) collect(ids map[string]struct{}) []atauth.SessionRecord {
	now := b.now()
	out := make([]atauth.SessionRecord, 0, len(ids))
	for id := range ids {
		if rec := b.sessions[id]; live(rec.ExpiresAt, now) {
			out = append(out, *rec)
		}
	}
	slices.SortFunc(out, func(x, y atauth.SessionRecord) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	return out
}

// PutOnce implements atauth.Store.
func (s *Store) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v := onceValue{value: cloneBytes(value), expiresAt: expiresAt}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.once[key] = v
	return nil
}

// TakeOnce implements atauth.Store. The returned slice belongs to the
// caller.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.once[key]
	if !ok {
		return nil, atauth.ErrNotFound
	}
	delete(b.once, key)
	if !live(v.expiresAt, b.now()) {
		return nil, atauth.ErrNotFound
	}
	return v.value, nil
}

// AcquireLease implements atauth.Store. ttl must be positive.
func (s *Store) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("atauth: memstore: lease ttl must be positive")
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if l, ok := b.leases[key]; ok && l.owner != owner && live(l.expiresAt, now) {
		return atauth.ErrLeaseHeld
	}
	b.leases[key] = lease{owner: owner, expiresAt: now.Add(ttl)}
	return nil
}

// ReleaseLease implements atauth.Store.
func (s *Store) ReleaseLease(ctx context.Context, key, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.leases[key]; ok && l.owner == owner {
		delete(b.leases, key)
	}
	return nil
}

// PurgeExpired implements atauth.Store. It holds the store's lock while it
// scans every record, so call it every few minutes, not per request.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	n := 0
	for _, rec := range b.sessions {
		if !live(rec.ExpiresAt, now) {
			b.deleteSession(*rec)
			n++
		}
	}
	for k, v := range b.once {
		if !live(v.expiresAt, now) {
			delete(b.once, k)
			n++
		}
	}
	for k, l := range b.leases {
		if !live(l.expiresAt, now) {
			delete(b.leases, k)
			n++
		}
	}
	return n, nil
}

// deleteSession removes rec and its index entries. b.mu must be held.
func (b *backend) deleteSession(rec atauth.SessionRecord) {
	delete(b.sessions, rec.ID)
	b.unindex(rec)
}

// index adds rec to the secondary indexes. b.mu must be held.
func (b *backend) index(rec atauth.SessionRecord) {
	if rec.GroupID != "" {
		addToSet(b.byGroup, rec.GroupID, rec.ID)
	}
	addToSet(b.byDID, didKind{rec.DID, rec.Kind}, rec.ID)
}

// unindex removes rec from the secondary indexes. b.mu must be held.
func (b *backend) unindex(rec atauth.SessionRecord) {
	if rec.GroupID != "" {
		removeFromSet(b.byGroup, rec.GroupID, rec.ID)
	}
	removeFromSet(b.byDID, didKind{rec.DID, rec.Kind}, rec.ID)
}

func addToSet[K comparable](m map[K]map[string]struct{}, k K, id string) {
	set := m[k]
	if set == nil {
		set = make(map[string]struct{})
		m[k] = set
	}
	set[id] = struct{}{}
}

func removeFromSet[K comparable](m map[K]map[string]struct{}, k K, id string) {
	set := m[k]
	delete(set, id)
	if len(set) == 0 {
		delete(m, k)
	}
}

// cloneBytes copies b, keeping nil as nil.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

var _ atauth.IdleSessionLister = (*Store)(nil)

// ListIdleSessions returns up to limit live sessions last used before
// usedBefore, least recently used first. It scans every session: the
// janitor calls it every few minutes, not per request.
func (s *Store) ListIdleSessions(ctx context.Context, usedBefore time.Time, limit int) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.b.mu.RLock()
	now := s.b.now()
	out := []atauth.SessionRecord{}
	for _, rec := range s.b.sessions {
		if live(rec.ExpiresAt, now) && rec.LastUsedAt.Before(usedBefore) {
			out = append(out, *rec)
		}
	}
	s.b.mu.RUnlock()
	slices.SortFunc(out, func(x, y atauth.SessionRecord) int {
		if c := x.LastUsedAt.Compare(y.LastUsedAt); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
