package atauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/atauth/atauth/internal/scope"
)

type contextKey struct{ name string }

func (k *contextKey) String() string { return "atauth context value " + k.name }

var sessionContextKey = &contextKey{"session"}

// SessionFromContext returns the session RequireAuth or OptionalAuth put in
// ctx.
func SessionFromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionContextKey).(*Session)
	return s, ok
}

// ContextWithSession returns a copy of ctx that carries s.
func ContextWithSession(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, sessionContextKey, s)
}

// RequireAuth serves next only for requests with a valid credential, with the
// session in the request's context; others get 401 {"detail": …}.
func (m *Manager) RequireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := m.authenticateOrError(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithSession(r.Context(), s)))
	})
}

// OptionalAuth serves next for every request, with the session in the
// context when the request carries a valid credential. An invalid or
// expired credential is treated as none, so a stale cookie does not break a
// public page; a store outage is a 503.
func (m *Manager) OptionalAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Authenticate(r)
		switch {
		case err == nil:
			r = r.WithContext(ContextWithSession(r.Context(), s))
		case errors.Is(err, ErrNoCredential), errors.Is(err, ErrInvalidSession):
		default:
			m.writeErr(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RequireScopes returns middleware that serves next only for sessions whose
// granted scope covers every scope in required (ATProto permission scopes:
// repo:, rpc:, blob:, account:, identity:, include:, transition:*). A
// request without a valid credential gets 401; a session lacking a scope
// gets 403 {"detail": "scope_upgrade_required"}, which the frontend answers
// with a scope upgrade. include: scopes are checked against
// Config.PermissionSets. It panics if a required scope is malformed: that is
// a programming error, found at startup.
func (m *Manager) RequireScopes(required ...string) func(http.Handler) http.Handler {
	want := make([]scope.Scope, len(required))
	for i, r := range required {
		sc, err := scope.Parse(r)
		if err != nil {
			panic(fmt.Sprintf("atauth: RequireScopes(%q): %v", r, err))
		}
		want[i] = sc
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, ok := m.authenticateOrError(w, r)
			if !ok {
				return
			}
			if !m.covers(s, want) {
				writeError(w, http.StatusForbidden, "scope_upgrade_required")
				return
			}
			next.ServeHTTP(w, r.WithContext(ContextWithSession(r.Context(), s)))
		})
	}
}

// HasScopes reports whether s's granted scope covers every scope in
// required. A malformed required scope is an ErrInvalidInput.
func (m *Manager) HasScopes(s *Session, required ...string) (bool, error) {
	want := make([]scope.Scope, len(required))
	for i, r := range required {
		sc, err := scope.Parse(r)
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
		want[i] = sc
	}
	return m.covers(s, want), nil
}

func (m *Manager) covers(s *Session, want []scope.Scope) bool {
	granted, _ := scope.ParseSet(s.Scope)
	for _, w := range want {
		if !granted.CoversWith(w, m.permissionSets) {
			return false
		}
	}
	return true
}
