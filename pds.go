package atauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/atauth/atauth/internal/oauthclient"
)

// maxXRPCResponse caps the JSON answers Query and Procedure decode.
const maxXRPCResponse = 16 << 20

// PDSClient makes authenticated requests to the PDS of one session, browser
// session or developer token alike. Each request carries the session's
// DPoP-bound access token and a DPoP proof; a nonce challenge is answered
// with exactly one retry, and an expired or refused access token is
// refreshed (once) without ever losing the grant. It is safe for concurrent
// use.
type PDSClient struct {
	m       *Manager
	storeID string
	did     string
}

// PDSClient returns a client for the PDS of s.
func (m *Manager) PDSClient(s *Session) *PDSClient {
	return &PDSClient{m: m, storeID: s.storeID, did: s.DID}
}

// HTTPClient returns an *http.Client whose requests go through c. Requests
// must be for the session's PDS (see PDS); others fail, so the token never
// leaves for another host. Redirects are not followed.
func (c *PDSClient) HTTPClient() *http.Client {
	return &http.Client{
		Transport: roundTripperFunc(c.Do),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// PDS returns the URL of the session's PDS.
func (c *PDSClient) PDS(ctx context.Context) (string, error) {
	g, err := c.m.loadGrant(ctx, c.storeID)
	if err != nil {
		return "", err
	}
	return g.sec.PDS, nil
}

// Do sends req to the session's PDS. A req.URL without scheme and host, such
// as "/xrpc/com.atproto.server.getSession", is resolved against the PDS. The
// body is buffered so that a retry sends it again. It returns
// ErrSessionExpired when the session has ended or its grant was refused.
func (c *PDSClient) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("atauth: reading the request body: %w", err)
		}
	}
	g, err := c.m.loadGrant(ctx, c.storeID)
	if err != nil {
		return nil, err
	}
	target, err := c.target(req.URL, g.sec.PDS)
	if err != nil {
		return nil, err
	}
	if c.m.needsRefresh(g, "") {
		if g, err = c.m.refresh(ctx, c.storeID, ""); err != nil {
			return nil, err
		}
	}
	resp, err := c.send(req, target, body, g)
	if err != nil {
		return nil, err
	}
	if ch, ok := oauthclient.DPoPChallenge(resp.Header); resp.StatusCode != http.StatusUnauthorized || !ok || ch["error"] != "invalid_token" {
		return c.afterMigration(req, target, body, g, resp)
	}
	// The PDS refused the access token before its recorded expiry: refresh
	// once, reactively, and try again.
	drain(resp)
	if g, err = c.m.refresh(ctx, c.storeID, g.sec.AccessToken); err != nil {
		return nil, err
	}
	resp, err = c.send(req, target, body, g)
	if err != nil {
		return nil, err
	}
	return c.afterMigration(req, target, body, g, resp)
}

// afterMigration follows the account once when resp says it left the PDS,
// and sends the request again to its new PDS.
func (c *PDSClient) afterMigration(req *http.Request, target *url.URL, body []byte, g *grantState, resp *http.Response) (*http.Response, error) {
	if !accountMoved(resp) {
		return resp, nil
	}
	moved, err := c.m.followMigration(req.Context(), g)
	if err != nil || moved == nil {
		if err != nil {
			drain(resp)
			return nil, err
		}
		return resp, nil
	}
	drain(resp)
	base, err := url.Parse(moved.sec.PDS)
	if err != nil {
		return nil, err
	}
	return c.send(req, base.ResolveReference(&url.URL{Path: target.Path, RawQuery: target.RawQuery}), body, moved)
}

// target resolves u against the PDS and refuses any other origin.
func (c *PDSClient) target(u *url.URL, pds string) (*url.URL, error) {
	base, err := url.Parse(pds)
	if err != nil {
		return nil, fmt.Errorf("atauth: the session's PDS %q is not a URL: %w", pds, err)
	}
	if u.Scheme == "" && u.Host == "" {
		return base.ResolveReference(u), nil
	}
	want, err1 := oauthclient.Origin(pds)
	got, err2 := oauthclient.Origin(u.String())
	if err1 != nil || err2 != nil || want != got {
		return nil, fmt.Errorf("%w: %s is not the session's PDS", ErrInvalidInput, u.Redacted())
	}
	return u, nil
}

// send makes one request with g's token, answering a nonce challenge once.
func (c *PDSClient) send(req *http.Request, target *url.URL, body []byte, g *grantState) (*http.Response, error) {
	origin, err := oauthclient.Origin(target.String())
	if err != nil {
		return nil, err
	}
	nonce := c.m.oauth.Nonces.Get(origin)
	if nonce == "" {
		nonce = g.sec.PDSNonce
	}
	for attempt := 0; ; attempt++ {
		proof, err := c.m.oauth.DPoPProof(g.key, req.Method, target.String(), nonce, g.sec.AccessToken)
		if err != nil {
			return nil, err
		}
		out := req.Clone(req.Context())
		out.URL = target
		out.Host = ""
		out.RequestURI = ""
		out.Body, out.ContentLength = http.NoBody, 0
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		out.Header.Set("Authorization", "DPoP "+g.sec.AccessToken)
		out.Header.Set("DPoP", proof)
		resp, err := c.m.http.Do(out)
		if err != nil {
			return nil, fmt.Errorf("%w: PDS request: %w", ErrUpstream, err)
		}
		fresh := resp.Header.Get("DPoP-Nonce")
		if fresh != "" && fresh != nonce {
			c.m.oauth.Nonces.Set(origin, fresh)
			c.m.persistNonce(req.Context(), g, fresh)
		}
		ch, ok := oauthclient.DPoPChallenge(resp.Header)
		if attempt > 0 || resp.StatusCode != http.StatusUnauthorized || !ok || ch["error"] != "use_dpop_nonce" || fresh == "" || fresh == nonce {
			return resp, nil
		}
		c.m.emit(req.Context(), Event{Type: EventNonceRetry, DID: g.rec.DID})
		drain(resp)
		nonce = fresh
	}
}

// persistNonce stores the PDS's new nonce in the session, best effort: a
// single compare-and-swap that only touches the nonce, so it can never
// overwrite rotated tokens, and whose loss costs one round trip later. g is
// shared by the callers of one refresh, so it is copied, never modified.
func (m *Manager) persistNonce(ctx context.Context, g *grantState, nonce string) {
	if g.sec.PDSNonce == nonce {
		return
	}
	sec := g.sec
	sec.PDSNonce = nonce
	rec := g.rec
	sealed, err := m.sealJSON(sec, rec.ID)
	if err != nil {
		return
	}
	rec.Sealed = sealed
	_ = m.store.UpdateSession(ctx, rec)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// XRPCError is an error answer of a PDS's XRPC endpoint. Message comes from
// the server: escape it before rendering.
type XRPCError struct {
	StatusCode int
	Name       string `json:"error"`
	Message    string `json:"message"`
}

func (e *XRPCError) Error() string {
	return fmt.Sprintf("atauth: xrpc: %d %s: %s", e.StatusCode, e.Name, e.Message)
}

// Query calls the XRPC query nsid with params and decodes the JSON answer
// into out (unless out is nil).
func (c *PDSClient) Query(ctx context.Context, nsid string, params url.Values, out any) error {
	u := &url.URL{Path: "/xrpc/" + nsid, RawQuery: params.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	return c.call(req, out)
}

// Procedure calls the XRPC procedure nsid with in as its JSON body (none if
// nil) and decodes the JSON answer into out (unless out is nil).
func (c *PDSClient) Procedure(ctx context.Context, nsid string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("atauth: encoding the procedure input: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/xrpc/"+nsid, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.call(req, out)
}

func (c *PDSClient) call(req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxXRPCResponse+1))
	if err != nil {
		return fmt.Errorf("%w: reading the PDS's answer: %w", ErrUpstream, err)
	}
	if len(data) > maxXRPCResponse {
		return fmt.Errorf("%w: the PDS's answer exceeds %d bytes", ErrUpstream, maxXRPCResponse)
	}
	if resp.StatusCode/100 != 2 {
		xe := &XRPCError{StatusCode: resp.StatusCode}
		_ = json.Unmarshal(data, xe)
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%w: %w", ErrUpstream, xe)
		}
		return xe
	}
	if out == nil || len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("atauth: decoding the PDS's answer: %w", err)
	}
	return nil
}

// MarkAccessTokenExpired records the access token of s as expired, so that
// its next PDS call refreshes first. Tests use it to exercise refresh
// against servers whose tokens live an hour, without moving clocks;
// operators, to force a refresh.
func (m *Manager) MarkAccessTokenExpired(ctx context.Context, s *Session) error {
	_, err := m.updateSecrets(ctx, s.storeID, func(sec *sessionSecrets) {
		sec.AccessExpiresAt = m.now().Add(-time.Second)
	})
	return err
}

// updateSecrets applies change to the sealed part of the session storeID
// with compare-and-swap, retrying when another writer got there first, and
// returns the session as written.
func (m *Manager) updateSecrets(ctx context.Context, storeID string, change func(*sessionSecrets)) (*grantState, error) {
	for range maxGroupRetries {
		g, err := m.loadGrant(ctx, storeID)
		if err != nil {
			return nil, err
		}
		change(&g.sec)
		rec := g.rec
		if rec.Sealed, err = m.sealJSON(g.sec, rec.ID); err != nil {
			return nil, err
		}
		err = m.store.UpdateSession(ctx, rec)
		switch {
		case err == nil:
			rec.Version++
			return &grantState{rec: rec, sec: g.sec, key: g.key}, nil
		case errors.Is(err, ErrNotFound):
			return nil, ErrSessionExpired
		case !errors.Is(err, ErrConflict):
			return nil, storeErr("update session", err)
		}
	}
	return nil, fmt.Errorf("%w: the session kept changing", ErrConflict)
}

// accountMoved reports whether resp says the account is not, or no longer,
// on this PDS. It reads the body and puts it back.
func accountMoved(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound:
	default:
		return false
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	switch e.Error {
	case "AccountDeactivated", "AccountNotFound", "RepoNotFound", "RepoDeactivated":
		return true
	}
	return false
}

// followMigration re-resolves the account's DID document after its PDS
// said the account is not there. When the account moved to a PDS served by
// the same authorization server, the session follows it: the new PDS is
// recorded and the tokens are refreshed for it. When it moved to another
// authorization server the grant cannot follow, and the session ends. It
// returns nil when the account has not moved.
func (m *Manager) followMigration(ctx context.Context, g *grantState) (*grantState, error) {
	ident, err := m.resolver.LookupDID(ctx, syntax.DID(g.rec.DID))
	if err != nil || ident.PDS == g.sec.PDS {
		return nil, nil
	}
	issuer, err := m.oauth.ResolveAuthServer(ctx, ident.PDS)
	if err != nil {
		return nil, classifyOAuthErr(err)
	}
	if issuer != g.sec.Issuer {
		return nil, m.expireSession(ctx, g, fmt.Errorf("the account moved to %s, whose authorization server is %s", ident.PDS, issuer))
	}
	m.log.InfoContext(ctx, "atauth: following the account to its new PDS", "did", g.rec.DID, "pds", ident.PDS)
	moved, err := m.updateSecrets(ctx, g.rec.ID, func(sec *sessionSecrets) {
		sec.PDS = ident.PDS
		sec.PDSNonce = ""
	})
	if err != nil {
		return nil, err
	}
	// The access token was issued for the old PDS.
	return m.refresh(ctx, g.rec.ID, moved.sec.AccessToken)
}
