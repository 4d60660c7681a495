package atauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/atauth/atauth/internal/oauthclient"
)

// Session is an authenticated session: a browser's sign-in or a developer
// token. Its fields are safe to show the user; the OAuth tokens stay sealed
// in the Store.
type Session struct {
	// DID is the account's decentralized identifier.
	DID string
	// Handle is the account's handle, verified in both directions when the
	// session was created. It is empty when the handle could not be verified.
	Handle string
	// Kind is KindBrowser or KindDeveloper.
	Kind SessionKind
	// GroupID links the sessions of one browser's multi-account group.
	GroupID string
	// Name is a developer token's name.
	Name string
	// Scope is the space-separated scope the account granted.
	Scope string
	// CreatedAt is when the session was created.
	CreatedAt time.Time
	// ExpiresAt is when the session ends.
	ExpiresAt time.Time

	id      string // the credential; never logged or returned in JSON to browsers
	storeID string // SHA-256 of id: the Store key
}

// Scopes returns the granted scopes.
func (s *Session) Scopes() []string { return strings.Fields(s.Scope) }

// HasScope reports whether scope was granted.
func (s *Session) HasScope(scope string) bool {
	for _, g := range strings.Fields(s.Scope) {
		if g == scope {
			return true
		}
	}
	return false
}

// sessionSecrets is the sealed part of a session record.
type sessionSecrets struct {
	PDS                string    `json:"pds"`
	Issuer             string    `json:"iss"`
	TokenEndpoint      string    `json:"token_endpoint"`
	RevocationEndpoint string    `json:"revocation_endpoint,omitempty"`
	AccessToken        string    `json:"access_token"`
	RefreshToken       string    `json:"refresh_token"`
	AccessExpiresAt    time.Time `json:"access_expires_at"`
	DPoPKey            []byte    `json:"dpop_key"`
	AuthMethod         string    `json:"auth_method"`
	// ClientKeyID is the client key the grant is bound to (confidential
	// clients).
	ClientKeyID string    `json:"client_kid,omitempty"`
	GrantedAt   time.Time `json:"granted_at"`
	// PDSNonce is the PDS's latest DPoP nonce, kept so that another
	// instance or a restarted process does not start with a challenge.
	PDSNonce string `json:"pds_nonce,omitempty"`
}

func (m *Manager) sealJSON(v any, additionalData string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("atauth: encoding record: %w", err)
	}
	return m.keyring.Seal(b, []byte(additionalData))
}

func (m *Manager) openJSON(sealed []byte, additionalData string, v any) error {
	b, err := m.keyring.Open(sealed, []byte(additionalData))
	if err != nil {
		return fmt.Errorf("atauth: opening record: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("atauth: decoding record: %w", err)
	}
	return nil
}

func sessionFromRecord(rec *SessionRecord, id string) *Session {
	return &Session{
		DID:       rec.DID,
		Handle:    rec.Handle,
		Kind:      rec.Kind,
		GroupID:   rec.GroupID,
		Name:      rec.Name,
		Scope:     rec.Scopes,
		CreatedAt: rec.CreatedAt,
		ExpiresAt: rec.ExpiresAt,
		id:        id,
		storeID:   rec.ID,
	}
}

// storeErr wraps a Store failure other than ErrNotFound and ErrConflict.
func storeErr(op string, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, op, err)
}

// newSession is what createSession needs to know.
type newSession struct {
	DID, Handle, Name string
	Kind              SessionKind
	GroupID           string
	Scope             string
	Lifetime          time.Duration
	Secrets           sessionSecrets
}

// createSession mints a session id and stores the session. It returns the
// session with its id.
func (m *Manager) createSession(ctx context.Context, ns newSession) (*Session, error) {
	id, err := m.newSecret()
	if err != nil {
		return nil, err
	}
	now := m.now()
	// A new session always holds a new grant.
	ns.Secrets.GrantedAt = now
	rec := SessionRecord{
		ID:        hashSecret(id),
		DID:       ns.DID,
		Handle:    ns.Handle,
		Kind:      ns.Kind,
		GroupID:   ns.GroupID,
		Name:      ns.Name,
		Scopes:    ns.Scope,
		CreatedAt: now,
		// However active the session, the grant behind it ends at the
		// authorization server's limit.
		ExpiresAt:  minTime(now.Add(ns.Lifetime), ns.Secrets.GrantedAt.Add(m.grantLifetime())),
		LastUsedAt: now,
		Version:    1,
	}
	if ns.Kind == KindDeveloper {
		rec.Prefix = id[:8]
	}
	rec.Sealed, err = m.sealJSON(ns.Secrets, rec.ID)
	if err != nil {
		return nil, err
	}
	if err := m.store.CreateSession(ctx, rec); err != nil {
		return nil, storeErr("create session", err)
	}
	m.handles.put(rec.DID, rec.Handle, now)
	return sessionFromRecord(&rec, id), nil
}

// SessionByID returns the live session whose credential is id. It returns
// ErrInvalidSession for an unknown, expired or malformed id.
func (m *Manager) SessionByID(ctx context.Context, id string) (*Session, error) {
	if !validSecret(id) {
		return nil, ErrInvalidSession
	}
	rec, err := m.store.GetSession(ctx, hashSecret(id))
	if errors.Is(err, ErrNotFound) {
		return nil, ErrInvalidSession
	}
	if err != nil {
		return nil, storeErr("get session", err)
	}
	if !m.live(&rec) {
		return nil, ErrInvalidSession
	}
	return sessionFromRecord(&rec, id), nil
}

// Authenticate returns the session of the request's credential: the
// Authorization: Bearer token when that header is present, otherwise the
// session cookie. A present but invalid credential is ErrInvalidSession; it
// never falls back to the other one. No credential is ErrNoCredential.
func (m *Manager) Authenticate(r *http.Request) (*Session, error) {
	id, err := m.credential(r)
	if err != nil {
		return nil, err
	}
	return m.SessionByID(r.Context(), id)
}

// credential extracts the session id from r without allocating.
func (m *Manager) credential(r *http.Request) (string, error) {
	if auth, ok := r.Header["Authorization"]; ok {
		if len(auth) != 1 {
			return "", ErrInvalidSession
		}
		scheme, token, found := strings.Cut(auth[0], " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			return "", ErrInvalidSession
		}
		return strings.TrimSpace(token), nil
	}
	if v, ok := cookieValue(r, m.cfg.CookieName); ok {
		return v, nil
	}
	return "", ErrNoCredential
}

// cookieValue finds the named cookie without parsing every cookie, which
// matters on the per-request path.
func cookieValue(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if ok && k == name {
				return strings.Trim(v, `"`), true
			}
		}
	}
	return "", false
}

// live reports whether rec can be used: it has not expired, and its grant
// has not been idle past the inactivity limit, after which the
// authorization server has let its refresh token die.
func (m *Manager) live(rec *SessionRecord) bool {
	now := m.now()
	return rec.ExpiresAt.After(now) && now.Sub(rec.LastUsedAt) < m.cfg.InactivityLimit
}

// Account is an account of a multi-account group.
type Account struct {
	DID    string `json:"did"`
	Handle string `json:"handle"`
}

// User is what the app may show about the signed-in user.
type User struct {
	DID    string `json:"did"`
	Handle string `json:"handle"`
	// LinkedAccounts are the accounts of the session's group, the current
	// one included. It is empty for a session in no group.
	LinkedAccounts []Account   `json:"linked_accounts"`
	Kind           SessionKind `json:"kind"`
	Scopes         []string    `json:"scopes"`
}

// CurrentUser describes s and its linked accounts.
func (m *Manager) CurrentUser(ctx context.Context, s *Session) (*User, error) {
	m.refreshHandle(ctx, s)
	u := &User{DID: s.DID, Handle: s.Handle, Kind: s.Kind, Scopes: s.Scopes(), LinkedAccounts: []Account{}}
	if u.Scopes == nil {
		u.Scopes = []string{}
	}
	if s.GroupID == "" {
		return u, nil
	}
	recs, err := m.store.ListSessionsByGroup(ctx, s.GroupID)
	if err != nil {
		return nil, storeErr("list group", err)
	}
	for _, rec := range recs {
		if rec.Kind != KindBrowser {
			continue
		}
		handle := rec.Handle
		if rec.DID == s.DID {
			handle = s.Handle
		}
		u.LinkedAccounts = append(u.LinkedAccounts, Account{DID: rec.DID, Handle: handle})
	}
	return u, nil
}

// Logout ends s: the session is deleted from the Store and its grant is
// revoked at the authorization server. Revocation is best effort: its
// failure is logged, and the local delete happens regardless. Other sessions
// of the group, and developer tokens, are not touched.
func (m *Manager) Logout(ctx context.Context, s *Session) error {
	rec, err := m.store.GetSession(ctx, s.storeID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return storeErr("get session", err)
	}
	return m.endSession(ctx, &rec)
}

// endSession deletes rec, then revokes its grant, best effort.
func (m *Manager) endSession(ctx context.Context, rec *SessionRecord) error {
	if err := m.store.DeleteSession(ctx, rec.ID); err != nil {
		return storeErr("delete session", err)
	}
	m.revoke(ctx, rec)
	return nil
}

// endSessionByKey ends the session stored under id, best effort: it runs
// while undoing a failed flow, whose own error is what the caller sees.
func (m *Manager) endSessionByKey(ctx context.Context, id string) {
	rec, err := m.store.GetSession(ctx, id)
	if err == nil {
		err = m.endSession(ctx, &rec)
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		m.log.WarnContext(ctx, "atauth: could not end a session while undoing a flow", "err", err)
	}
}

// revoke revokes the grant behind rec at its authorization server, best
// effort.
func (m *Manager) revoke(ctx context.Context, rec *SessionRecord) {
	var sec sessionSecrets
	if err := m.openJSON(rec.Sealed, rec.ID, &sec); err != nil {
		m.log.WarnContext(ctx, "atauth: cannot open session to revoke it", "did", rec.DID, "err", err)
		return
	}
	m.revokeSecrets(ctx, rec.DID, &sec)
}

// revokeSecrets revokes the grant whose tokens sec holds. Revoking the
// refresh token ends the whole grant at the reference authorization server.
func (m *Manager) revokeSecrets(ctx context.Context, did string, sec *sessionSecrets) {
	key, err := oauthclient.ParseDPoPKey(sec.DPoPKey)
	if err != nil {
		m.log.WarnContext(ctx, "atauth: cannot parse DPoP key to revoke", "did", did, "err", err)
		return
	}
	m.revokeToken(ctx, m.grant(sec.Issuer, sec.TokenEndpoint, sec.RevocationEndpoint, sec.ClientKeyID, key), sec.RefreshToken, did)
}
