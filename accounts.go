package atauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// SessionInfo describes a session of an account for a host app's "your
// sessions" page. It carries no credential.
type SessionInfo struct {
	// Key identifies the session for EndSession. It is the hash the Store
	// keys the session by, not a credential.
	Key        string
	Kind       SessionKind
	Name       string
	Prefix     string
	GroupID    string
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time
}

// ListSessions returns the live sessions of did, browser sessions and
// developer tokens, oldest first.
func (m *Manager) ListSessions(ctx context.Context, did string) ([]SessionInfo, error) {
	var infos []SessionInfo
	for _, kind := range []SessionKind{KindBrowser, KindDeveloper} {
		recs, err := m.store.ListSessionsByDID(ctx, did, kind)
		if err != nil {
			return nil, storeErr("list sessions", err)
		}
		for _, rec := range recs {
			infos = append(infos, SessionInfo{
				Key: rec.ID, Kind: rec.Kind, Name: rec.Name, Prefix: rec.Prefix, GroupID: rec.GroupID,
				CreatedAt: rec.CreatedAt, LastUsedAt: rec.LastUsedAt, ExpiresAt: rec.ExpiresAt,
			})
		}
	}
	slices.SortStableFunc(infos, func(a, b SessionInfo) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return infos, nil
}

// EndSession ends the session of did that key (from ListSessions) names,
// and revokes its grant. It returns ErrNotFound when did has no such session.
func (m *Manager) EndSession(ctx context.Context, did, key string) error {
	rec, err := m.store.GetSession(ctx, key)
	if errors.Is(err, ErrNotFound) || err == nil && rec.DID != did {
		return fmt.Errorf("%w: no such session", ErrNotFound)
	}
	if err != nil {
		return storeErr("get session", err)
	}
	return m.endSession(ctx, &rec)
}

// EndAllSessions ends every session of did, browser sessions and developer
// tokens, revoking their grants: for account deletion or "sign out
// everywhere". It reports how many sessions it ended.
func (m *Manager) EndAllSessions(ctx context.Context, did string) (int, error) {
	ended := 0
	var errs []error
	for _, kind := range []SessionKind{KindBrowser, KindDeveloper} {
		recs, err := m.store.ListSessionsByDID(ctx, did, kind)
		if err != nil {
			return ended, storeErr("list sessions", err)
		}
		for i := range recs {
			if err := m.endSession(ctx, &recs[i]); err != nil {
				errs = append(errs, err)
				continue
			}
			ended++
		}
	}
	return ended, errors.Join(errs...)
}
