package atauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// StartScopeUpgrade asks the user to grant s more scopes. The authorization
// server is asked for the union of the granted and the requested scopes, each
// of which must be in the declared universe (Config.Scopes). On approval the
// new grant replaces the old one inside the same session: its id, group,
// kind, name and expiry stay.
func (m *Manager) StartScopeUpgrade(ctx context.Context, s *Session, scopes []string) (*FlowStart, error) {
	if err := m.checkManage(s); err != nil {
		return nil, err
	}
	if len(scopes) == 0 {
		return nil, fmt.Errorf("%w: no scopes requested", ErrInvalidInput)
	}
	if err := checkScopes(scopes, m.cfg.Scopes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	want := []string{}
	for _, sc := range append(s.Scopes(), scopes...) {
		// A granted scope the client no longer declares cannot be asked for.
		if slices.Contains(m.cfg.Scopes, sc) && !slices.Contains(want, sc) {
			want = append(want, sc)
		}
	}
	if !slices.Contains(want, "atproto") {
		want = append([]string{"atproto"}, want...)
	}
	target, err := m.targetForSession(ctx, s)
	if err != nil {
		return nil, err
	}
	target.loginHint = s.DID
	return m.startFlow(ctx, flowParams{kind: FlowScopeUpgrade, target: target, scopes: want, initiator: s})
}

// finishUpgrade stores the new grant in the initiating session, then revokes
// the old grant, so that a failure in between never logs the user out.
func (m *Manager) finishUpgrade(ctx context.Context, flow *flowRecord, scope string, secrets sessionSecrets) (*Session, error) {
	for range maxGroupRetries {
		rec, err := m.store.GetSession(ctx, flow.Initiator)
		if errors.Is(err, ErrNotFound) {
			return nil, callbackErr(CodeExpired, errors.New("atauth: the session to upgrade has ended"))
		}
		if err != nil {
			return nil, storeErr("get session", err)
		}
		var old sessionSecrets
		if err := m.openJSON(rec.Sealed, rec.ID, &old); err != nil {
			return nil, err
		}
		next := rec
		next.Scopes = strings.Join(strings.Fields(scope), " ")
		next.LastUsedAt = m.now()
		next.Sealed, err = m.sealJSON(secrets, rec.ID)
		if err != nil {
			return nil, err
		}
		err = m.store.UpdateSession(ctx, next)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, storeErr("update session", err)
		}
		m.revokeSecrets(ctx, rec.DID, &old)
		next.Version++
		return sessionFromRecord(&next, ""), nil
	}
	return nil, fmt.Errorf("%w: the session kept changing during the upgrade", ErrConflict)
}
