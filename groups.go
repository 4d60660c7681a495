package atauth

import (
	"context"
	"errors"
	"fmt"
)

// maxGroupRetries bounds the compare-and-swap loop that gives the initiator
// of an add-account a group.
const maxGroupRetries = 8

// checkManage refuses management actions to developer tokens unless the app
// opted in: a leaked token must not mint more tokens or take over a browser's
// group.
func (m *Manager) checkManage(s *Session) error {
	if s.Kind == KindDeveloper && !m.cfg.DeveloperTokensCanManage {
		return fmt.Errorf("%w: developer tokens cannot manage sessions, tokens or groups", ErrForbidden)
	}
	return nil
}

// StartAddAccount starts signing another account into the group of the
// browser session s. It asks the authorization server for a fresh sign-in
// (prompt=login where the server supports prompts). It returns
// ErrAlreadyInGroup when the account, compared by DID after resolution, is
// already in the group, the current account included.
func (m *Manager) StartAddAccount(ctx context.Context, s *Session, identifier string) (*FlowStart, error) {
	if err := m.checkManage(s); err != nil {
		return nil, err
	}
	target, err := m.resolveTarget(ctx, identifier)
	if err != nil {
		return nil, err
	}
	if target.did == "" {
		return nil, fmt.Errorf("%w: add an account by handle or DID", ErrInvalidInput)
	}
	members, err := m.groupMembers(ctx, s)
	if err != nil {
		return nil, err
	}
	for _, rec := range members {
		if rec.DID == target.did {
			return nil, ErrAlreadyInGroup
		}
	}
	prompt := ""
	if target.meta.SupportsPrompt("login") {
		prompt = "login"
	}
	return m.startFlow(ctx, flowParams{kind: FlowAddAccount, target: target, scopes: m.loginScopes, prompt: prompt, initiator: s})
}

// groupMembers returns the browser sessions of s's group, or s alone when it
// has no group.
func (m *Manager) groupMembers(ctx context.Context, s *Session) ([]SessionRecord, error) {
	if s.GroupID == "" {
		rec, err := m.store.GetSession(ctx, s.storeID)
		if err != nil {
			return nil, storeErr("get session", err)
		}
		return []SessionRecord{rec}, nil
	}
	recs, err := m.store.ListSessionsByGroup(ctx, s.GroupID)
	if err != nil {
		return nil, storeErr("list group", err)
	}
	members := recs[:0:0]
	for _, rec := range recs {
		if rec.Kind == KindBrowser {
			members = append(members, rec)
		}
	}
	return members, nil
}

// finishAddAccount adds the new session to the initiator's group. The
// initiating session must still exist and still own the group the flow
// started in; the flow cookie already proved the same browser. An account
// already in the group is replaced, never duplicated.
func (m *Manager) finishAddAccount(ctx context.Context, flow *flowRecord, ns newSession) (*Session, error) {
	groupID, err := m.adoptGroup(ctx, flow)
	if err != nil {
		return nil, err
	}
	recs, err := m.store.ListSessionsByGroup(ctx, groupID)
	if err != nil {
		return nil, storeErr("list group", err)
	}
	for i := range recs {
		if recs[i].DID != ns.DID || recs[i].Kind != KindBrowser {
			continue
		}
		if recs[i].ID == flow.Initiator {
			return nil, callbackErr(CodeAccountMismatch, errors.New("atauth: the account to add is the one already signed in"))
		}
		if err := m.endSession(ctx, &recs[i]); err != nil {
			return nil, err
		}
	}
	ns.GroupID = groupID
	sess, err := m.createSession(ctx, ns)
	if err != nil {
		return nil, err
	}
	// Two add-accounts of one account may finish at once, each having seen
	// no copy of it: both then keep the newest copy.
	if err := m.dedupeGroup(ctx, groupID, ns.DID); err != nil {
		return nil, err
	}
	return sess, nil
}

// dedupeGroup ends every browser session of did in the group but the newest
// (by creation time, then key), so the group holds did at most once.
func (m *Manager) dedupeGroup(ctx context.Context, groupID, did string) error {
	recs, err := m.store.ListSessionsByGroup(ctx, groupID)
	if err != nil {
		return storeErr("list group", err)
	}
	var newest *SessionRecord
	for i := range recs {
		r := &recs[i]
		if r.DID != did || r.Kind != KindBrowser {
			continue
		}
		if newest == nil || r.CreatedAt.After(newest.CreatedAt) || r.CreatedAt.Equal(newest.CreatedAt) && r.ID > newest.ID {
			newest = r
		}
	}
	for i := range recs {
		r := &recs[i]
		if r.DID == did && r.Kind == KindBrowser && r != newest {
			if err := m.endSession(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// adoptGroup returns the initiator's group, creating it when the initiator
// has none. Creation is a compare-and-swap on the initiator's record, so
// concurrent add-accounts from one browser agree on one group.
func (m *Manager) adoptGroup(ctx context.Context, flow *flowRecord) (string, error) {
	for range maxGroupRetries {
		rec, err := m.store.GetSession(ctx, flow.Initiator)
		if errors.Is(err, ErrNotFound) {
			return "", callbackErr(CodeExpired, errors.New("atauth: the session that started adding an account has ended"))
		}
		if err != nil {
			return "", storeErr("get initiator", err)
		}
		if rec.Kind != KindBrowser || (flow.GroupID != "" && rec.GroupID != flow.GroupID) {
			return "", callbackErr(CodeExpired, errors.New("atauth: the initiating session no longer owns the group"))
		}
		if rec.GroupID != "" {
			return rec.GroupID, nil
		}
		groupID, err := m.newSecret()
		if err != nil {
			return "", err
		}
		rec.GroupID = groupID
		err = m.store.UpdateSession(ctx, rec)
		if err == nil {
			return groupID, nil
		}
		if !errors.Is(err, ErrConflict) {
			return "", storeErr("create group", err)
		}
	}
	return "", fmt.Errorf("%w: the initiating session kept changing", ErrConflict)
}

// SwitchAccount makes the group member targetDID the browser's active
// session. It returns the target session with a fresh id, which the caller
// sets as the session cookie: a switch re-mints the target's id, so an id is
// never recovered from storage and a planted or leaked old id is useless.
func (m *Manager) SwitchAccount(ctx context.Context, s *Session, targetDID string) (*Session, error) {
	if err := m.checkManage(s); err != nil {
		return nil, err
	}
	target, err := m.findSwitchTarget(ctx, s, targetDID)
	if err != nil {
		return nil, err
	}
	return m.reissue(ctx, target)
}

// findSwitchTarget finds the group member targetDID of s.
func (m *Manager) findSwitchTarget(ctx context.Context, s *Session, targetDID string) (*SessionRecord, error) {
	if s.GroupID == "" {
		return nil, ErrNoGroup
	}
	if targetDID == s.DID {
		return nil, ErrAlreadyActive
	}
	members, err := m.groupMembers(ctx, s)
	if err != nil {
		return nil, err
	}
	for i := range members {
		if members[i].DID != targetDID {
			continue
		}
		if !m.live(&members[i]) {
			return nil, ErrSessionExpired
		}
		return &members[i], nil
	}
	return nil, ErrNotInGroup
}

// reissue moves rec to a freshly minted id and returns the session under it.
// The new record is written before the old one is deleted, so a failure in
// between leaves the session usable.
func (m *Manager) reissue(ctx context.Context, rec *SessionRecord) (*Session, error) {
	var sec sessionSecrets
	if err := m.openJSON(rec.Sealed, rec.ID, &sec); err != nil {
		return nil, err
	}
	id, err := m.newSecret()
	if err != nil {
		return nil, err
	}
	next := *rec
	next.ID = hashSecret(id)
	next.Version = 1
	next.Sealed, err = m.sealJSON(sec, next.ID)
	if err != nil {
		return nil, err
	}
	if err := m.store.CreateSession(ctx, next); err != nil {
		return nil, storeErr("create session", err)
	}
	if err := m.store.DeleteSession(ctx, rec.ID); err != nil {
		return nil, storeErr("delete session", err)
	}
	return sessionFromRecord(&next, id), nil
}

// LogoutAndSwitch ends s and makes the group member targetDID the browser's
// active session, under a fresh id. The target is checked before anything
// ends: a wrong target changes nothing.
func (m *Manager) LogoutAndSwitch(ctx context.Context, s *Session, targetDID string) (*Session, error) {
	next, err := m.SwitchAccount(ctx, s, targetDID)
	if err != nil {
		return nil, err
	}
	if err := m.Logout(ctx, s); err != nil {
		return nil, err
	}
	return next, nil
}

// LogoutAll ends every session of s's group (s alone when it has no group)
// and revokes their grants. Developer tokens are not touched.
func (m *Manager) LogoutAll(ctx context.Context, s *Session) error {
	if err := m.checkManage(s); err != nil {
		return err
	}
	members, err := m.groupMembers(ctx, s)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for i := range members {
		if err := m.endSession(ctx, &members[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
