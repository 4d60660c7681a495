package atauth

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/atauth/atauth/internal/oauthclient"
)

// grantState is a session's grant as the Store holds it.
type grantState struct {
	rec SessionRecord
	sec sessionSecrets
	key *ecdsa.PrivateKey
}

func (g *grantState) grant(m *Manager) oauthclient.Grant {
	return m.grant(g.sec.Issuer, g.sec.TokenEndpoint, g.sec.RevocationEndpoint, g.sec.ClientKeyID, g.key)
}

// loadGrant reads and opens the session stored under storeID. A missing or
// expired session is ErrSessionExpired.
func (m *Manager) loadGrant(ctx context.Context, storeID string) (*grantState, error) {
	rec, err := m.store.GetSession(ctx, storeID)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrSessionExpired
	}
	if err != nil {
		m.emit(ctx, Event{Type: EventStoreError, Err: err})
		return nil, storeErr("get session", err)
	}
	if !m.live(&rec) {
		return nil, ErrSessionExpired
	}
	g := &grantState{rec: rec}
	err = m.openJSON(rec.Sealed, rec.ID, &g.sec)
	if err == nil {
		g.key, err = oauthclient.ParseDPoPKey(g.sec.DPoPKey)
	}
	if err != nil {
		// A record no key of the keyring opens (a key removed too early)
		// holds no usable grant: the user must sign in again.
		m.log.ErrorContext(ctx, "atauth: cannot open a session record; is a sealing key missing?", "did", rec.DID, "err", err)
		return nil, fmt.Errorf("%w: %w", ErrSessionExpired, err)
	}
	return g, nil
}

// needsRefresh reports whether g's access token must be refreshed: it is
// the token a caller saw refused (stale), or it expires within RefreshSkew.
func (m *Manager) needsRefresh(g *grantState, stale string) bool {
	if stale != "" && g.sec.AccessToken == stale {
		return true
	}
	exp := g.sec.AccessExpiresAt
	return !exp.IsZero() && exp.Sub(m.now()) < m.cfg.RefreshSkew
}

// refresh returns the session's grant with a usable access token, refreshing
// it if needed. stale is an access token the caller saw refused, or "".
//
// Within a process one refresh per session is in flight and concurrent
// callers share its result. Across processes the Store's lease serializes
// refreshes; under it the session is read again from the Store, and the
// network is skipped when another instance already rotated the tokens. The
// write back is a compare-and-swap on the version, so a lease lost to a
// pause is detected, not trusted.
func (m *Manager) refresh(ctx context.Context, storeID, stale string) (*grantState, error) {
	// The flight outlives a caller that gives up: others may be waiting on
	// it, and a refresh abandoned halfway could lose the rotated tokens.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.leaseTTL()+m.cfg.RefreshTimeout)
	defer cancel()
	ch := m.refreshes.DoChan(storeID, func() (any, error) {
		return m.refreshShared(fctx, storeID, stale)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*grantState), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// leaseTTL outlives a refresh request, so that the lease cannot expire
// while its holder still waits for the authorization server.
func (m *Manager) leaseTTL() time.Duration { return 2*m.cfg.RefreshTimeout + 5*time.Second }

func (m *Manager) refreshShared(ctx context.Context, storeID, stale string) (*grantState, error) {
	start := m.now()
	g, err := m.loadGrant(ctx, storeID)
	if err != nil {
		return nil, err
	}
	if !m.needsRefresh(g, stale) {
		return g, nil
	}
	owner, err := m.newSecret()
	if err != nil {
		return nil, err
	}
	leaseKey := "refresh:" + storeID
	g, held, err := m.waitForLease(ctx, leaseKey, owner, storeID, stale)
	if err != nil || !held {
		return g, err
	}
	defer func() {
		if err := m.store.ReleaseLease(context.WithoutCancel(ctx), leaseKey, owner); err != nil {
			m.log.WarnContext(ctx, "atauth: releasing a refresh lease failed", "err", err)
		}
	}()
	if !m.needsRefresh(g, stale) {
		m.emit(ctx, Event{Type: EventRefresh, Outcome: RefreshSkipped, DID: g.rec.DID})
		return g, nil
	}
	out, outcome, err := m.refreshHeld(ctx, g)
	m.emit(ctx, Event{Type: EventRefresh, Outcome: outcome, DID: g.rec.DID, Duration: m.now().Sub(start), Err: err})
	return out, err
}

// waitForLease takes the refresh lease, polling while another instance
// holds it. It returns the session as read under the lease, or, when the
// holder finished the refresh meanwhile, the refreshed session with held
// false.
func (m *Manager) waitForLease(ctx context.Context, leaseKey, owner, storeID, stale string) (g *grantState, held bool, err error) {
	start := m.now()
	delay := 5 * time.Millisecond
	for waited := false; ; waited = true {
		err := m.store.AcquireLease(ctx, leaseKey, owner, m.leaseTTL())
		if err != nil && !errors.Is(err, ErrLeaseHeld) {
			m.emit(ctx, Event{Type: EventStoreError, Err: err})
			return nil, false, storeErr("acquire lease", err)
		}
		if err == nil && waited {
			m.emit(ctx, Event{Type: EventLeaseWait, Duration: m.now().Sub(start)})
		}
		g, lerr := m.loadGrant(ctx, storeID)
		if lerr != nil {
			if err == nil {
				_ = m.store.ReleaseLease(context.WithoutCancel(ctx), leaseKey, owner)
			}
			return nil, false, lerr
		}
		if err == nil {
			return g, true, nil
		}
		if !m.needsRefresh(g, stale) {
			m.emit(ctx, Event{Type: EventLeaseWait, Duration: m.now().Sub(start)})
			m.emit(ctx, Event{Type: EventRefresh, Outcome: RefreshSkipped, DID: g.rec.DID})
			return g, false, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, fmt.Errorf("%w: waiting for another instance's refresh: %w", ErrUpstream, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// refreshHeld refreshes g under the lease and writes the new tokens back.
func (m *Manager) refreshHeld(ctx context.Context, g *grantState) (*grantState, string, error) {
	method := "none"
	if m.confidential {
		method = "private_key_jwt"
	}
	if g.sec.AuthMethod != method {
		// The grant belongs to the client as it was configured before: the
		// authorization server refuses a refresh with another auth method.
		return nil, RefreshExpired, m.expireSession(ctx, g, fmt.Errorf("session created with token_endpoint_auth_method %q, client now uses %q", g.sec.AuthMethod, method))
	}
	rctx, cancel := context.WithTimeout(ctx, m.cfg.RefreshTimeout)
	tokens, err := m.oauth.Refresh(rctx, g.grant(m), g.sec.RefreshToken)
	cancel()
	switch {
	case errors.Is(err, oauthclient.ErrUnknownSigningKey):
		// The client key this grant is bound to was removed from
		// ClientKeys: no request of the grant can be signed any more.
		return nil, RefreshExpired, m.expireSession(ctx, g, err)
	case oauthclient.IsInvalidGrant(err):
		// A peer may have rotated the tokens while this instance's lease
		// had lapsed: read again before ending anything.
		fresh, ferr := m.loadGrant(ctx, g.rec.ID)
		if ferr == nil && fresh.sec.RefreshToken != g.sec.RefreshToken {
			return fresh, RefreshRaced, nil
		}
		return nil, RefreshExpired, m.expireSession(ctx, g, err)
	case err != nil:
		return nil, RefreshFailed, fmt.Errorf("%w: refreshing the session: %w", ErrUpstream, err)
	case tokens.Sub != g.rec.DID:
		m.revokeToken(ctx, g.grant(m), tokens.RefreshToken, g.rec.DID)
		return nil, RefreshExpired, m.expireSession(ctx, g, fmt.Errorf("refresh returned sub %q", tokens.Sub))
	}

	now := m.now()
	next := g.sec
	next.AccessToken = tokens.AccessToken
	next.RefreshToken = tokens.RefreshToken
	next.AccessExpiresAt = tokens.ExpiresAt
	scope := g.rec.Scopes
	if tokens.Scope != "" {
		scope = strings.Join(strings.Fields(tokens.Scope), " ")
	}
	for range maxGroupRetries {
		rec := g.rec
		rec.Scopes = scope
		rec.LastUsedAt = now
		sealed, err := m.sealJSON(next, rec.ID)
		if err != nil {
			return nil, RefreshFailed, err
		}
		rec.Sealed = sealed
		err = m.store.UpdateSession(ctx, rec)
		switch {
		case err == nil:
			rec.Version++
			return &grantState{rec: rec, sec: next, key: g.key}, RefreshOK, nil
		case errors.Is(err, ErrNotFound):
			// Logged out during the refresh: the new grant must not outlive
			// the session.
			m.revokeToken(ctx, g.grant(m), tokens.RefreshToken, g.rec.DID)
			return nil, RefreshExpired, ErrSessionExpired
		case !errors.Is(err, ErrConflict):
			m.emit(ctx, Event{Type: EventStoreError, Err: err})
			return nil, RefreshFailed, storeErr("update session", err)
		}
		fresh, ferr := m.loadGrant(ctx, g.rec.ID)
		if ferr != nil {
			return nil, RefreshFailed, ferr
		}
		if fresh.sec.RefreshToken != g.sec.RefreshToken {
			// Someone rotated the tokens although this instance held the
			// lease. Theirs are in the Store; keep them.
			m.log.WarnContext(ctx, "atauth: a refresh raced despite the lease", "did", g.rec.DID)
			return fresh, RefreshRaced, nil
		}
		// Only other fields changed (handle, group, nonce): apply the new
		// tokens on top of them.
		g = fresh
		next.PDSNonce = fresh.sec.PDSNonce
	}
	return nil, RefreshFailed, fmt.Errorf("%w: the session kept changing during a refresh", ErrConflict)
}

// expireSession ends a session whose grant the authorization server refused.
func (m *Manager) expireSession(ctx context.Context, g *grantState, cause error) error {
	m.log.InfoContext(ctx, "atauth: session expired", "did", g.rec.DID, "err", cause)
	if err := m.store.DeleteSession(ctx, g.rec.ID); err != nil {
		m.emit(ctx, Event{Type: EventStoreError, Err: err})
		return storeErr("delete session", err)
	}
	m.emit(ctx, Event{Type: EventSessionExpired, DID: g.rec.DID, Err: cause})
	return fmt.Errorf("%w: %w", ErrSessionExpired, cause)
}
