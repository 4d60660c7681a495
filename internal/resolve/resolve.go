// Package resolve turns what a user types (a handle or a DID) into a verified
// ATProto identity: the DID, the handle verified in both directions, and the
// PDS that hosts the account.
package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Sentinel errors. They say what failed, so a caller can tell "no such
// account" from "the directory is down".
var (
	// ErrHandleNotFound reports a handle that resolves to no DID.
	ErrHandleNotFound = errors.New("atauth: handle not found")
	// ErrHandleMismatch reports a handle whose DID document declares another
	// handle, so the handle cannot be verified.
	ErrHandleMismatch = errors.New("atauth: handle does not match its DID document")
	// ErrDIDNotFound reports a DID that has no document.
	ErrDIDNotFound = errors.New("atauth: DID not found")
	// ErrNoPDS reports a DID document that names no usable PDS endpoint.
	ErrNoPDS = errors.New("atauth: DID document has no usable PDS endpoint")
	// ErrResolution reports a failure to reach or read a directory.
	ErrResolution = errors.New("atauth: identity resolution failed")
)

// maxHandleResponse caps a resolveHandle answer; a real one is under 200 bytes.
const maxHandleResponse = 4 << 10

// Identity is a resolved account.
type Identity struct {
	DID syntax.DID
	// Handle is the handle verified in both directions, or "" when the DID
	// document declares none or it does not resolve back to DID.
	Handle string
	// PDS is the account's PDS endpoint from the DID document.
	PDS string
}

// Resolver resolves handles and DIDs. The zero value is not usable; fill HTTP.
type Resolver struct {
	// HTTP carries every request: PLC, did:web, well-known and XRPC.
	HTTP *http.Client
	// PLCURL is the PLC directory. The default is https://plc.directory.
	PLCURL string
	// HandleResolverURL, when set, is an XRPC service whose
	// com.atproto.identity.resolveHandle resolves every handle, instead of
	// DNS TXT and HTTPS well-known. Local networks need it: *.test handles
	// resolve only that way.
	HandleResolverURL string
	// Insecure accepts http PDS endpoints (local networks).
	Insecure bool
	// UserAgent is sent with every request when set.
	UserAgent string
}

func (r *Resolver) directory() *identity.BaseDirectory {
	plc := r.PLCURL
	if plc == "" {
		plc = identity.DefaultPLCURL
	}
	return &identity.BaseDirectory{
		PLCURL:                strings.TrimRight(plc, "/"),
		HTTPClient:            *r.HTTP,
		TryAuthoritativeDNS:   true,
		SkipDNSDomainSuffixes: []string{".bsky.social"},
		UserAgent:             r.UserAgent,
	}
}

// ResolveHandle returns the DID that handle claims, without verifying it.
func (r *Resolver) ResolveHandle(ctx context.Context, handle syntax.Handle) (syntax.DID, error) {
	handle = handle.Normalize()
	if r.HandleResolverURL != "" {
		return r.resolveHandleXRPC(ctx, handle)
	}
	did, err := r.directory().ResolveHandle(ctx, handle)
	switch {
	case err == nil:
		return did, nil
	case errors.Is(err, identity.ErrHandleNotFound), errors.Is(err, identity.ErrHandleReservedTLD), errors.Is(err, identity.ErrInvalidHandle):
		return "", fmt.Errorf("%w: %s: %w", ErrHandleNotFound, handle, err)
	default:
		return "", fmt.Errorf("%w: handle %s: %w", ErrResolution, handle, err)
	}
}

func (r *Resolver) resolveHandleXRPC(ctx context.Context, handle syntax.Handle) (syntax.DID, error) {
	u := strings.TrimRight(r.HandleResolverURL, "/") + "/xrpc/com.atproto.identity.resolveHandle?handle=" + url.QueryEscape(handle.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrResolution, err)
	}
	if r.UserAgent != "" {
		req.Header.Set("User-Agent", r.UserAgent)
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: handle %s: %w", ErrResolution, handle, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHandleResponse+1))
	if err != nil {
		return "", fmt.Errorf("%w: handle %s: %w", ErrResolution, handle, err)
	}
	if len(body) > maxHandleResponse {
		return "", fmt.Errorf("%w: handle %s: response too large", ErrResolution, handle)
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("%w: %s", ErrHandleNotFound, handle)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%w: handle %s: resolver answered %d", ErrResolution, handle, resp.StatusCode)
	}
	var out struct {
		DID string `json:"did"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("%w: handle %s: %w", ErrResolution, handle, err)
	}
	did, err := syntax.ParseDID(out.DID)
	if err != nil {
		return "", fmt.Errorf("%w: handle %s: resolver answered an invalid DID", ErrResolution, handle)
	}
	return did, nil
}

// document fetches did's document and extracts the declared handle and PDS.
func (r *Resolver) document(ctx context.Context, did syntax.DID) (identity.Identity, error) {
	doc, err := r.directory().ResolveDID(ctx, did)
	switch {
	case errors.Is(err, identity.ErrDIDNotFound):
		return identity.Identity{}, fmt.Errorf("%w: %s", ErrDIDNotFound, did)
	case err != nil:
		return identity.Identity{}, fmt.Errorf("%w: DID %s: %w", ErrResolution, did, err)
	}
	return identity.ParseIdentity(doc), nil
}

func (r *Resolver) pds(ident identity.Identity) (string, error) {
	raw := ident.PDSEndpoint()
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %s", ErrNoPDS, ident.DID)
	}
	if u.Scheme != "https" && !(r.Insecure && u.Scheme == "http") {
		return "", fmt.Errorf("%w: %s: PDS %q is not https", ErrNoPDS, ident.DID, raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// LookupHandle resolves handle to its DID, fetches the DID document, and
// requires the document to declare the same handle.
func (r *Resolver) LookupHandle(ctx context.Context, handle syntax.Handle) (*Identity, error) {
	handle = handle.Normalize()
	did, err := r.ResolveHandle(ctx, handle)
	if err != nil {
		return nil, err
	}
	ident, err := r.document(ctx, did)
	if err != nil {
		return nil, err
	}
	declared, err := ident.DeclaredHandle()
	if err != nil || declared.Normalize() != handle {
		return nil, fmt.Errorf("%w: %s resolves to %s", ErrHandleMismatch, handle, did)
	}
	pds, err := r.pds(ident)
	if err != nil {
		return nil, err
	}
	return &Identity{DID: did, Handle: handle.String(), PDS: pds}, nil
}

// LookupDID fetches did's document and verifies its declared handle by
// resolving it back. An unverifiable handle is not an error: Handle is "".
func (r *Resolver) LookupDID(ctx context.Context, did syntax.DID) (*Identity, error) {
	ident, err := r.document(ctx, did)
	if err != nil {
		return nil, err
	}
	pds, err := r.pds(ident)
	if err != nil {
		return nil, err
	}
	out := &Identity{DID: did, PDS: pds}
	if declared, err := ident.DeclaredHandle(); err == nil {
		resolved, err := r.ResolveHandle(ctx, declared)
		if err == nil && resolved == did {
			out.Handle = declared.Normalize().String()
		} else if err != nil && !errors.Is(err, ErrHandleNotFound) {
			return nil, err
		}
	}
	return out, nil
}

// Lookup resolves a handle or a DID.
func (r *Resolver) Lookup(ctx context.Context, id syntax.AtIdentifier) (*Identity, error) {
	if did, err := id.AsDID(); err == nil {
		return r.LookupDID(ctx, did)
	}
	handle, err := id.AsHandle()
	if err != nil {
		return nil, fmt.Errorf("%w: %q is neither a handle nor a DID", ErrHandleNotFound, id)
	}
	return r.LookupHandle(ctx, handle)
}
