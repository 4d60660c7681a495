package scope

import (
	"strings"
)

// Set is a set of granted scopes, such as the scope of a token response.
// The zero Set grants nothing.
type Set struct {
	scopes []Scope // normalized, deduplicated, in the order first seen
}

// ParseSet parses a space-separated scope string. It is tolerant, because
// servers may grant scopes this package does not know yet: a token that does
// not parse is left out of the set and reported in the returned errors (each
// wraps ErrInvalid), and the rest of the set stays usable.
func ParseSet(space string) (Set, []error) {
	var s Set
	var errs []error
	for _, tok := range strings.Fields(space) {
		sc, err := Parse(tok)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.add(sc)
	}
	return s, errs
}

func (s *Set) add(sc Scope) {
	for _, x := range s.scopes {
		if x == sc {
			return
		}
	}
	s.scopes = append(s.scopes, sc)
}

// String returns the normalized scopes of s, space-separated, in the order
// they were first seen.
func (s Set) String() string {
	parts := make([]string, len(s.scopes))
	for i, sc := range s.scopes {
		parts[i] = sc.String()
	}
	return strings.Join(parts, " ")
}

// PermissionSets looks up the contents of a permission set (the target of an
// include: scope) by its NSID, when the application knows them, for example
// from the lexicon it publishes. It returns false if the set is unknown.
//
// The contents are given as scopes, one per permission in the set. An rpc
// permission with inheritAud must be given with its audience filled in: the
// aud of the include: scope the application requests.
//
// As an authorization server does, coverage uses only the permissions a set
// is allowed to grant: repo and rpc permissions without wildcards, whose
// collections and methods are all under the set's namespace authority. The
// rest are ignored.
type PermissionSets func(nsid string) ([]Scope, bool)

// Covers reports whether s grants everything required grants. It is
// CoversWith with no permission sets known.
func (s Set) Covers(required Scope) bool {
	return s.CoversWith(required, nil)
}

// CoversAll reports whether s covers every scope in required.
func (s Set) CoversAll(required []Scope) bool {
	return len(s.Missing(required)) == 0
}

// Missing returns the scopes in required that s does not cover, in order.
func (s Set) Missing(required []Scope) []Scope {
	return s.MissingWith(required, nil)
}

// MissingWith is Missing with permission sets resolved by sets, as in
// CoversWith.
func (s Set) MissingWith(required []Scope, sets PermissionSets) []Scope {
	var missing []Scope
	for _, r := range required {
		if !s.CoversWith(r, sets) {
			missing = append(missing, r)
		}
	}
	return missing
}

// CoversWith reports whether s grants everything required grants, using sets
// (which may be nil) to look inside include: scopes.
//
// The scopes in s are taken together: repo?collection=a&collection=b is
// covered by repo:a and repo:b granted separately.
//
// An include: scope is covered by the same include granted (an include with
// an aud also covers one without, which grants a subset), or, if sets knows
// the permission set, by grants that cover each permission it can grant. A
// set with nothing it can grant is never covered that way. Grants in the
// same namespace are not enough on their own: without the set's contents
// there is no telling what it contains.
//
// Granted include: scopes grant the contents of their permission sets when
// sets knows them, and nothing else. The reference authorization server
// returns the expanded permissions rather than the include: itself, so this
// matters only for servers that echo it.
//
// The static scopes (atproto and the transition: scopes) are covered only by
// themselves. transition:generic covers every repo and blob scope and rpc
// scopes for methods outside chat.bsky; transition:chat.bsky, together with
// transition:generic (the OAuth spec says it does not work alone), covers
// chat.bsky methods; both are needed for an rpc scope with lxm *.
// transition:email covers account:email (read).
func (s Set) CoversWith(required Scope, sets PermissionSets) bool {
	granted := s.scopes
	if sets != nil {
		granted = s.expand(sets)
	}
	if required.kind != kindInclude {
		return covers(granted, required)
	}
	for _, g := range s.scopes {
		if g.kind == kindInclude && g.attr == required.attr &&
			(required.aud == "" || required.aud == g.aud) {
			return true
		}
	}
	if sets == nil {
		return false
	}
	perms, ok := permissionsOf(required, sets)
	if !ok || len(perms) == 0 {
		return false
	}
	for _, p := range perms {
		if !covers(granted, p) {
			return false
		}
	}
	return true
}

// expand returns the scopes of s followed by the permissions of its include:
// scopes that sets knows.
func (s Set) expand(sets PermissionSets) []Scope {
	out := s.scopes
	for _, g := range s.scopes {
		if g.kind != kindInclude {
			continue
		}
		if perms, ok := permissionsOf(g, sets); ok {
			out = append(out[:len(out):len(out)], perms...)
		}
	}
	return out
}

// permissionsOf returns the permissions that the include: scope inc can
// grant, according to sets.
func permissionsOf(inc Scope, sets PermissionSets) ([]Scope, bool) {
	contents, ok := sets(inc.attr)
	if !ok {
		return nil, false
	}
	var perms []Scope
	for _, p := range contents {
		if p.kind != kindRepo && p.kind != kindRPC {
			continue
		}
		allowed := true
		for _, v := range p.values() {
			if !underAuthority(inc.attr, v) {
				allowed = false
				break
			}
		}
		if allowed {
			perms = append(perms, p)
		}
	}
	return perms, true
}

// covers reports whether granted, taken together, covers r. r is not an
// include: scope.
func covers(granted []Scope, r Scope) bool {
	var generic, chat, email bool
	for _, g := range granted {
		switch g.kind {
		case kindTransitionGeneric:
			generic = true
		case kindTransitionChat:
			chat = true
		case kindTransitionEmail:
			email = true
		}
	}

	switch r.kind {
	case kindAtproto, kindTransitionGeneric, kindTransitionEmail, kindTransitionChat:
		return hasKind(granted, r.kind)

	case kindRepo:
		if generic {
			return true
		}
		for _, c := range r.values() {
			for _, a := range []actions{actCreate, actUpdate, actDelete} {
				if r.actions&a != 0 && !grantsRepo(granted, c, a) {
					return false
				}
			}
		}
		return true

	case kindRPC:
		for _, l := range r.values() {
			isChat := strings.HasPrefix(l, "chat.bsky.")
			switch {
			case l == "*" && generic && chat:
			case l != "*" && isChat && generic && chat:
			case l != "*" && !isChat && generic:
			case grantsRPC(granted, l, r.aud):
			default:
				return false
			}
		}
		return true

	case kindBlob:
		if generic {
			return true
		}
		for _, a := range r.values() {
			if !grantsBlob(granted, a) {
				return false
			}
		}
		return true

	case kindAccount:
		if email && r.attr == "email" && r.actions == actRead {
			return true
		}
		for _, g := range granted {
			if g.kind == kindAccount && g.attr == r.attr &&
				(g.actions == actManage || r.actions == actRead) {
				return true
			}
		}
		return false

	case kindIdentity:
		for _, g := range granted {
			if g.kind == kindIdentity && (g.attr == "*" || g.attr == r.attr) {
				return true
			}
		}
		return false
	}
	return false
}

func hasKind(granted []Scope, k kind) bool {
	for _, g := range granted {
		if g.kind == k {
			return true
		}
	}
	return false
}

// grantsRepo reports whether a granted repo scope allows action a on
// collection c. A required collection * is only granted by a granted *.
func grantsRepo(granted []Scope, c string, a actions) bool {
	for _, g := range granted {
		if g.kind == kindRepo && g.actions&a != 0 && (g.hasValue("*") || g.hasValue(c)) {
			return true
		}
	}
	return false
}

// grantsRPC reports whether a granted rpc scope allows method l at audience
// aud. Wildcards on the required side are only granted by wildcards.
func grantsRPC(granted []Scope, l, aud string) bool {
	for _, g := range granted {
		if g.kind == kindRPC && (g.aud == "*" || g.aud == aud) &&
			(g.hasValue("*") || g.hasValue(l)) {
			return true
		}
	}
	return false
}

// grantsBlob reports whether a granted blob scope accepts everything the
// accept pattern a does.
func grantsBlob(granted []Scope, a string) bool {
	for _, g := range granted {
		if g.kind != kindBlob {
			continue
		}
		for _, p := range g.values() {
			if acceptCovers(p, a) {
				return true
			}
		}
	}
	return false
}

func acceptCovers(granted, required string) bool {
	switch {
	case granted == "*/*", granted == required:
		return true
	case strings.HasSuffix(granted, "/*"):
		// image/* covers image/png and image/*, but */* does not start with
		// "image/".
		return strings.HasPrefix(required, granted[:len(granted)-1])
	}
	return false
}

// Union returns the scope tokens of granted followed by those of requested
// that are not already there, for a scope-upgrade request that must not
// lose what was granted. Elements may hold several space-separated tokens.
// Tokens are compared in normalized form when they parse (so repo:x and
// repo?collection=x are one scope) and as strings when they do not; the
// first spelling is kept, because an authorization server checks requested
// tokens against the client metadata character by character.
func Union(granted, requested []string) []string {
	var out []string
	seen := make(map[string]bool)
	for _, list := range [][]string{granted, requested} {
		for _, elem := range list {
			for _, tok := range strings.Fields(elem) {
				key := tok
				if sc, err := Parse(tok); err == nil {
					key = sc.String()
				}
				if !seen[key] {
					seen[key] = true
					out = append(out, tok)
				}
			}
		}
	}
	return out
}
