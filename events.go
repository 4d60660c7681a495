package atauth

import (
	"context"
	"fmt"
	"time"
)

// FlowEvent describes a completed flow, for Config.OnFlowComplete.
type FlowEvent struct {
	Kind FlowKind
	// DID and Handle identify the account.
	DID, Handle string
	// Session is the session the flow created or upgraded.
	Session *Session
}

// flowCompleted runs the host app's hook. Its error fails the callback: a
// host app that could not create its profile row must not get a half
// signed-in user.
func (m *Manager) flowCompleted(ctx context.Context, kind FlowKind, s *Session) error {
	m.emit(ctx, Event{Type: EventFlowCompleted, FlowKind: kind, DID: s.DID})
	if m.cfg.OnFlowComplete == nil {
		return nil
	}
	if err := m.cfg.OnFlowComplete(ctx, FlowEvent{Kind: kind, DID: s.DID, Handle: s.Handle, Session: s}); err != nil {
		m.log.ErrorContext(ctx, "atauth: OnFlowComplete failed", "kind", kind, "did", s.DID, "err", err)
		return fmt.Errorf("atauth: OnFlowComplete: %w", err)
	}
	return nil
}

// EventType names what an Event reports.
type EventType string

// Event types.
const (
	// EventFlowCompleted: a flow finished; FlowKind says which.
	EventFlowCompleted EventType = "flow_completed"
	// EventRefresh: a refresh ended; Outcome is one of the Refresh…
	// constants and Duration its time.
	EventRefresh EventType = "refresh"
	// EventLeaseWait: a refresh waited Duration for another instance's
	// lease.
	EventLeaseWait EventType = "lease_wait"
	// EventNonceRetry: a server asked for a DPoP nonce and the request was
	// sent again.
	EventNonceRetry EventType = "nonce_retry"
	// EventRevocationFailed: revoking a grant failed; the local session
	// ended regardless.
	EventRevocationFailed EventType = "revocation_failed"
	// EventStoreError: the Store failed; Err says how.
	EventStoreError EventType = "store_error"
	// EventSessionExpired: a session ended because its grant was refused.
	EventSessionExpired EventType = "session_expired"
)

// Refresh outcomes, in Event.Outcome.
const (
	RefreshOK      = "ok"      // the tokens were rotated
	RefreshSkipped = "skipped" // another instance or caller had rotated them
	RefreshFailed  = "failed"  // a transient failure; the session stays
	RefreshExpired = "expired" // the grant was refused; the session ended
	RefreshRaced   = "raced"   // the write lost to another writer despite the lease
)

// Event is an observation for metrics and traces. It never carries a
// secret.
type Event struct {
	Type     EventType
	FlowKind FlowKind
	Outcome  string
	DID      string
	Duration time.Duration
	Err      error
}

func (m *Manager) emit(ctx context.Context, e Event) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(ctx, e)
	}
}
