package atauth

import (
	"context"
	"fmt"
)

// PDSOption is a PDS offered for account creation.
type PDSOption struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	Recommended bool   `json:"recommended"`
	Description string `json:"description"`
	InfoURL     string `json:"info_url"`
}

// PDSOptions says whether account creation is enabled and at which PDSs.
type PDSOptions struct {
	Enabled bool        `json:"enabled"`
	Options []PDSOption `json:"options"`
}

// PDSOptions returns the PDSs offered for account creation.
func (m *Manager) PDSOptions() PDSOptions {
	opts := PDSOptions{Enabled: m.cfg.AccountCreation, Options: []PDSOption{}}
	if m.cfg.AccountCreation {
		opts.Options = append(opts.Options, m.cfg.PDSOptions...)
	}
	return opts
}

// StartCreateAccount starts creating an account at the PDS pdsURL, which must
// be one of Config.PDSOptions unless Config.AllowAnyPDS is set. The
// authorization server is asked with prompt=create, and must support it. It
// returns ErrForbidden when account creation is disabled.
func (m *Manager) StartCreateAccount(ctx context.Context, pdsURL string) (*FlowStart, error) {
	if !m.cfg.AccountCreation {
		return nil, fmt.Errorf("%w: account creation is not enabled", ErrForbidden)
	}
	server, err := m.checkServerURL(pdsURL)
	if err != nil {
		return nil, err
	}
	if !m.cfg.AllowAnyPDS && !m.offersPDS(server) {
		return nil, fmt.Errorf("%w: %s is not among the offered PDSs", ErrInvalidInput, server)
	}
	meta, err := m.oauth.ResolveEntry(ctx, server)
	if err != nil {
		return nil, classifyOAuthErr(err)
	}
	if !meta.SupportsPrompt("create") {
		return nil, fmt.Errorf("%w: %s does not support account creation (prompt=create)", ErrUnsupportedServer, meta.Issuer)
	}
	return m.startFlow(ctx, flowParams{kind: FlowCreateAccount, target: &target{meta: meta}, scopes: m.loginScopes, prompt: "create"})
}

func (m *Manager) offersPDS(server string) bool {
	for _, o := range m.cfg.PDSOptions {
		if normalized, err := m.checkServerURL(o.URL); err == nil && normalized == server {
			return true
		}
	}
	return false
}
