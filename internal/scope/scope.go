// Package scope parses ATProto OAuth scopes and decides whether a granted
// scope set covers a required scope.
//
// The syntax and semantics follow the atproto Permissions specification
// (https://atproto.com/specs/permission) and the transitional scopes of the
// OAuth specification (https://atproto.com/specs/oauth). A scope token is
//
//	resource[:positional][?name=value&name=value...]
//
// where the positional part is a shorthand for one named parameter (for
// example repo:app.bsky.feed.post is repo?collection=app.bsky.feed.post),
// both parts are percent-decoded, and a repeated parameter gives a list.
// The static tokens atproto, transition:generic, transition:email and
// transition:chat.bsky have no parameters.
//
// Coverage is conservative: when in doubt, a required scope is reported as
// missing. In particular an include: scope (a reference to a permission set
// published as a lexicon) is only covered by the same include, or, when the
// caller supplies the set's contents, by grants that cover each permission in
// it. It is never inferred from grants that merely share its namespace.
package scope

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// ErrInvalid reports a scope token that is malformed or that names an unknown
// resource, parameter or value. Errors from Parse and ParseSet wrap it.
var ErrInvalid = errors.New("atauth: scope: invalid scope")

type kind uint8

const (
	kindNone kind = iota
	kindAtproto
	kindTransitionGeneric
	kindTransitionEmail
	kindTransitionChat
	kindRepo
	kindRPC
	kindBlob
	kindAccount
	kindIdentity
	kindInclude
)

// staticKind returns the kind of a token that has no parameters.
func staticKind(token string) kind {
	switch token {
	case "atproto":
		return kindAtproto
	case "transition:generic":
		return kindTransitionGeneric
	case "transition:email":
		return kindTransitionEmail
	case "transition:chat.bsky":
		return kindTransitionChat
	}
	return kindNone
}

// staticToken is the inverse of staticKind.
func staticToken(k kind) string {
	switch k {
	case kindAtproto:
		return "atproto"
	case kindTransitionGeneric:
		return "transition:generic"
	case kindTransitionEmail:
		return "transition:email"
	case kindTransitionChat:
		return "transition:chat.bsky"
	}
	return ""
}

// actions is a bit set of repo actions (create, update, delete) or account
// actions (read, manage).
type actions uint8

const (
	actCreate actions = 1 << iota
	actUpdate
	actDelete
	actRead
	actManage

	allRepoActions = actCreate | actUpdate | actDelete
)

// repoAction returns the bit for a repo action name, or 0 if it is unknown.
func repoAction(name string) actions {
	switch name {
	case "create":
		return actCreate
	case "update":
		return actUpdate
	case "delete":
		return actDelete
	}
	return 0
}

// Scope is one parsed and normalized scope token. The zero Scope is not a
// valid scope and is covered by nothing.
//
// Scopes are comparable: two Scopes are == exactly when they have the same
// normalized form.
type Scope struct {
	kind kind
	// list holds the normalized, sorted, space-separated collections (repo),
	// methods (rpc) or accept patterns (blob). Valid values never contain a
	// space, and a string keeps Scope comparable.
	list    string
	attr    string // account or identity attribute; include NSID
	aud     string // rpc or include audience; "" when absent
	actions actions
}

func (s Scope) values() []string {
	if s.list == "" {
		return nil
	}
	return strings.Split(s.list, " ")
}

func (s Scope) hasValue(v string) bool {
	return slices.Contains(s.values(), v)
}

func invalid(token, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalid, token, fmt.Sprintf(format, args...))
}

// Parse parses one scope token. It is strict, as the specification asks:
// names and values are case-sensitive (except MIME types), unknown resources,
// parameters and values are errors, and so is a parameter given both
// positionally and by name. Errors wrap ErrInvalid.
func Parse(token string) (Scope, error) {
	if token == "" {
		return Scope{}, invalid(token, "empty")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return Scope{}, invalid(token, "not printable ASCII")
		}
	}
	if k := staticKind(token); k != kindNone {
		return Scope{kind: k}, nil
	}

	r, err := split(token)
	if err != nil {
		return Scope{}, err
	}
	var s Scope
	switch r.resource {
	case "repo":
		s, err = parseRepo(r)
	case "rpc":
		s, err = parseRPC(r)
	case "blob":
		s, err = parseBlob(r)
	case "account":
		s, err = parseAccount(r)
	case "identity":
		s, err = parseIdentity(r)
	case "include":
		s, err = parseInclude(r)
	default:
		return Scope{}, invalid(token, "unknown resource %q", r.resource)
	}
	if err != nil {
		return Scope{}, err
	}
	if err := r.done(); err != nil {
		return Scope{}, err
	}
	return s, nil
}

// rawScope is a token split into its generic parts, before the resource's
// own rules apply.
type rawScope struct {
	token         string
	resource      string
	positional    string
	hasPositional bool
	params        url.Values
}

func split(token string) (*rawScope, error) {
	// The positional part ends at the first '?', so a ':' inside the query
	// (as in aud=did:web:…) does not start one.
	front, query, _ := strings.Cut(token, "?")
	resource, positional, hasPositional := strings.Cut(front, ":")
	r := &rawScope{token: token, resource: resource, hasPositional: hasPositional}
	if hasPositional {
		// Path unescaping, unlike query unescaping, keeps '+' as is, matching
		// decodeURIComponent in the reference implementation.
		p, err := url.PathUnescape(positional)
		if err != nil {
			return nil, invalid(token, "bad percent-encoding")
		}
		r.positional = p
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, invalid(token, "bad parameters")
	}
	r.params = params
	return r, nil
}

// list returns the values of a list parameter. If positional, the positional
// part is another way to give it, but not together with named values.
func (r *rawScope) list(name string, positional bool) ([]string, error) {
	v, named := r.params[name]
	delete(r.params, name)
	if positional && r.hasPositional {
		if named {
			return nil, invalid(r.token, "%s given both positionally and as a parameter", name)
		}
		return []string{r.positional}, nil
	}
	return v, nil
}

// single is like list for a parameter that takes at most one value.
func (r *rawScope) single(name string, positional bool) (string, bool, error) {
	v, err := r.list(name, positional)
	switch {
	case err != nil:
		return "", false, err
	case len(v) > 1:
		return "", false, invalid(r.token, "%s given more than once", name)
	case len(v) == 0:
		return "", false, nil
	}
	return v[0], true, nil
}

// done reports parameters that the resource does not define. New parameters
// may narrow a permission, so a token with one it does not understand must
// not be granted any meaning at all.
func (r *rawScope) done() error {
	if len(r.params) == 0 {
		return nil
	}
	names := make([]string, 0, len(r.params))
	for k := range r.params {
		names = append(names, k)
	}
	sort.Strings(names)
	return invalid(r.token, "unknown parameter %q", names[0])
}

// nsids reads the required list param name (positional allowed), each an
// NSID or *.
func (r *rawScope) nsids(name string) ([]string, error) {
	vals, err := r.list(name, true)
	if err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return nil, invalid(r.token, "%s is required", name)
	}
	for _, v := range vals {
		if v != "*" && !validNSID(v) {
			return nil, invalid(r.token, "%s %q is not an NSID or *", name, v)
		}
	}
	return vals, nil
}

func parseRepo(r *rawScope) (Scope, error) {
	colls, err := r.nsids("collection")
	if err != nil {
		return Scope{}, err
	}
	names, err := r.list("action", false)
	if err != nil {
		return Scope{}, err
	}
	var acts actions
	for _, n := range names {
		a := repoAction(n)
		if a == 0 {
			return Scope{}, invalid(r.token, "unknown repo action %q", n)
		}
		acts |= a
	}
	if acts == 0 {
		acts = allRepoActions
	}
	return Scope{kind: kindRepo, list: normalizeNames(colls), actions: acts}, nil
}

func parseRPC(r *rawScope) (Scope, error) {
	lxms, err := r.nsids("lxm")
	if err != nil {
		return Scope{}, err
	}
	aud, ok, err := r.single("aud", false)
	if err != nil {
		return Scope{}, err
	}
	if !ok {
		return Scope{}, invalid(r.token, "aud is required")
	}
	if aud != "*" && !validAudience(aud) {
		return Scope{}, invalid(r.token, "aud %q is not a DID service reference or *", aud)
	}
	if aud == "*" && slices.Contains(lxms, "*") {
		// The spec forbids a single permission for any method on any
		// service.
		return Scope{}, invalid(r.token, "lxm and aud cannot both be *")
	}
	return Scope{kind: kindRPC, list: normalizeNames(lxms), aud: aud}, nil
}

func parseBlob(r *rawScope) (Scope, error) {
	accepts, err := r.list("accept", true)
	if err != nil {
		return Scope{}, err
	}
	if len(accepts) == 0 {
		return Scope{}, invalid(r.token, "accept is required")
	}
	lower := make([]string, len(accepts))
	for i, a := range accepts {
		// MIME types are case-insensitive (RFC 2045); the reference
		// implementation lowercases them too.
		lower[i] = strings.ToLower(a)
		if !validAccept(lower[i]) {
			return Scope{}, invalid(r.token, "accept %q is not a MIME type or pattern", a)
		}
	}
	return Scope{kind: kindBlob, list: normalizeAccepts(lower)}, nil
}

func parseAccount(r *rawScope) (Scope, error) {
	attr, ok, err := r.single("attr", true)
	if err != nil {
		return Scope{}, err
	}
	switch {
	case !ok:
		return Scope{}, invalid(r.token, "attr is required")
	case attr != "email" && attr != "repo" && attr != "status":
		return Scope{}, invalid(r.token, "unknown account attr %q", attr)
	}
	names, err := r.list("action", false)
	if err != nil {
		return Scope{}, err
	}
	acts := actRead
	for _, n := range names {
		switch n {
		case "read":
		case "manage":
			// manage includes read, so it is all that needs keeping.
			acts = actManage
		default:
			return Scope{}, invalid(r.token, "unknown account action %q", n)
		}
	}
	return Scope{kind: kindAccount, attr: attr, actions: acts}, nil
}

func parseIdentity(r *rawScope) (Scope, error) {
	attr, ok, err := r.single("attr", true)
	if err != nil {
		return Scope{}, err
	}
	switch {
	case !ok:
		return Scope{}, invalid(r.token, "attr is required")
	case attr != "handle" && attr != "*":
		return Scope{}, invalid(r.token, "unknown identity attr %q", attr)
	}
	return Scope{kind: kindIdentity, attr: attr}, nil
}

func parseInclude(r *rawScope) (Scope, error) {
	nsid, ok, err := r.single("nsid", true)
	if err != nil {
		return Scope{}, err
	}
	if !ok || !validNSID(nsid) {
		return Scope{}, invalid(r.token, "nsid %q is not an NSID", nsid)
	}
	aud, hasAud, err := r.single("aud", false)
	if err != nil {
		return Scope{}, err
	}
	if hasAud && !validAudience(aud) {
		return Scope{}, invalid(r.token, "aud %q is not a DID service reference", aud)
	}
	return Scope{kind: kindInclude, attr: nsid, aud: aud}, nil
}

// normalizeNames sorts and deduplicates NSIDs; a wildcard makes the others
// redundant.
func normalizeNames(v []string) string {
	if slices.Contains(v, "*") {
		return "*"
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return strings.Join(slices.Compact(v), " ")
}

// normalizeAccepts sorts and deduplicates accept patterns, dropping those
// that another pattern in the list already covers.
func normalizeAccepts(v []string) string {
	if slices.Contains(v, "*/*") {
		return "*/*"
	}
	v = slices.Clone(v)
	slices.Sort(v)
	v = slices.Compact(v)
	kept := v[:0:0]
	for _, a := range v {
		typ, sub, _ := strings.Cut(a, "/")
		if sub != "*" && slices.Contains(v, typ+"/*") {
			continue
		}
		kept = append(kept, a)
	}
	return strings.Join(kept, " ")
}

// String returns the normalized form of s: lists sorted and deduplicated,
// default parameters left out, a single list value in the positional part,
// and only the characters that need it percent-encoded. Parsing the result
// gives back s. The zero Scope gives "".
func (s Scope) String() string {
	if t := staticToken(s.kind); t != "" {
		return t
	}
	var b scopeBuilder
	switch s.kind {
	case kindRepo:
		b.resource("repo")
		b.listParam("collection", s.values())
		if s.actions != allRepoActions {
			for _, name := range []string{"create", "update", "delete"} {
				if s.actions&repoAction(name) != 0 {
					b.param("action", name)
				}
			}
		}
	case kindRPC:
		b.resource("rpc")
		b.listParam("lxm", s.values())
		b.param("aud", s.aud)
	case kindBlob:
		b.resource("blob")
		b.listParam("accept", s.values())
	case kindAccount:
		b.resource("account")
		b.positional(s.attr)
		if s.actions == actManage {
			b.param("action", "manage")
		}
	case kindIdentity:
		b.resource("identity")
		b.positional(s.attr)
	case kindInclude:
		b.resource("include")
		b.positional(s.attr)
		if s.aud != "" {
			b.param("aud", s.aud)
		}
	default:
		return ""
	}
	return b.String()
}

// scopeBuilder writes a scope token in normalized form.
type scopeBuilder struct {
	strings.Builder
	hasParams bool
}

func (b *scopeBuilder) resource(name string) { b.WriteString(name) }

func (b *scopeBuilder) positional(v string) {
	b.WriteByte(':')
	b.WriteString(escape(v, false))
}

func (b *scopeBuilder) param(name, v string) {
	if b.hasParams {
		b.WriteByte('&')
	} else {
		b.WriteByte('?')
		b.hasParams = true
	}
	b.WriteString(name)
	b.WriteByte('=')
	b.WriteString(escape(v, true))
}

// listParam writes a single value positionally, as the reference
// implementation does, and several as repeated parameters.
func (b *scopeBuilder) listParam(name string, v []string) {
	if len(v) == 1 {
		b.positional(v[0])
		return
	}
	for _, x := range v {
		b.param(name, x)
	}
}

// escape percent-encodes v for a scope token. It leaves alone the characters
// that are safe there and common in scope values (':', '/', '*', '@', ','),
// so that normalized tokens stay readable. In a query value '+' would decode
// as a space, so it is encoded there.
func escape(v string, query bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~:/*@,", c) >= 0,
			c == '+' && !query:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
