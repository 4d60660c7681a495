package atauth

import (
	"context"
	"fmt"
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
	if m.cfg.OnFlowComplete == nil {
		return nil
	}
	if err := m.cfg.OnFlowComplete(ctx, FlowEvent{Kind: kind, DID: s.DID, Handle: s.Handle, Session: s}); err != nil {
		m.log.ErrorContext(ctx, "atauth: OnFlowComplete failed", "kind", kind, "did", s.DID, "err", err)
		return fmt.Errorf("atauth: OnFlowComplete: %w", err)
	}
	return nil
}
