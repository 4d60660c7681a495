package atauth

import (
	"context"
	"errors"
	"time"
)

// Store errors. Adapters return these (wrapped or not); callers test them with
// errors.Is.
var (
	// ErrNotFound reports that a record does not exist or has expired.
	ErrNotFound = errors.New("atauth: not found")

	// ErrConflict reports a failed compare-and-swap: the record changed since it
	// was read, or a record with the same key already exists.
	ErrConflict = errors.New("atauth: conflict")

	// ErrLeaseHeld reports that another owner holds an unexpired lease.
	ErrLeaseHeld = errors.New("atauth: lease held by another owner")
)

// SessionKind tells browser sessions from developer tokens.
type SessionKind string

// Session kinds.
const (
	// KindBrowser is a session created by signing in through a browser.
	KindBrowser SessionKind = "browser"
	// KindDeveloper is a developer token: a long-lived credential with its own
	// OAuth grant, presented as a bearer token by scripts and CLIs.
	KindDeveloper SessionKind = "developer"
)

// SessionRecord is a session as a Store keeps it. The fields other than Sealed
// are plain so that a SQL adapter can keep them in real columns an operator can
// query; nothing in them is a credential. Sealed holds the OAuth tokens, the
// DPoP key and nonces, encrypted by the Manager; a Store never opens it.
type SessionRecord struct {
	// ID is the store key: the hex SHA-256 of the session id. The session id
	// itself is never given to a Store.
	ID string
	// DID is the account's decentralized identifier.
	DID string
	// Handle is the account's handle as last verified.
	Handle string
	// Kind is KindBrowser or KindDeveloper.
	Kind SessionKind
	// GroupID links the browser sessions of one multi-account group. Empty
	// when the session belongs to no group.
	GroupID string
	// Name is a developer token's name. Empty for browser sessions.
	Name string
	// Prefix is the first 8 characters of a developer token, shown in lists
	// and accepted for revocation. Empty for browser sessions.
	Prefix string
	// Scopes is the space-separated OAuth scope granted to the session.
	Scopes string
	// CreatedAt is when the session was created.
	CreatedAt time.Time
	// ExpiresAt is when the session ends. A Store treats a record at or past
	// ExpiresAt as missing.
	ExpiresAt time.Time
	// LastUsedAt is when the session's grant was last used to reach the
	// account's servers (created, refreshed, or upgraded).
	LastUsedAt time.Time
	// Version counts updates. CreateSession stores 1; each successful
	// UpdateSession stores the caller's Version plus one.
	Version int64
	// Sealed is the encrypted part of the session.
	Sealed []byte
}

// Store persists atauth's records. Implementations must be safe for concurrent
// use, by several goroutines and, for shared backends, by several processes.
// Every method takes a context first and returns an error if the context is
// done. Keys and ids are opaque strings of at most 128 printable ASCII
// characters. A record whose expiry is already past when it is written is
// stored invisibly or not at all. Slices a Store returns (Sealed, one-time
// values) may be shared with the Store: callers must not modify them. Run
// storetest.Run against an implementation to check it.
type Store interface {
	// CreateSession stores a new session with Version 1. It returns
	// ErrConflict if a live session with the same ID exists.
	CreateSession(ctx context.Context, rec SessionRecord) error

	// GetSession returns the session stored under id, or ErrNotFound if
	// there is none or it has expired.
	GetSession(ctx context.Context, id string) (SessionRecord, error)

	// UpdateSession replaces the session rec.ID if its stored Version equals
	// rec.Version, storing rec with Version rec.Version+1. It returns
	// ErrConflict if the stored version differs and ErrNotFound if the
	// session does not exist or has expired.
	UpdateSession(ctx context.Context, rec SessionRecord) error

	// DeleteSession removes the session id. Deleting a missing session is not
	// an error.
	DeleteSession(ctx context.Context, id string) error

	// ListSessionsByGroup returns the live sessions whose GroupID is
	// groupID, oldest first. No match, and the empty groupID, give an empty
	// slice, not an error.
	ListSessionsByGroup(ctx context.Context, groupID string) ([]SessionRecord, error)

	// ListSessionsByDID returns the live sessions of did with the given
	// kind, oldest first. No match is an empty slice, not an error.
	ListSessionsByDID(ctx context.Context, did string, kind SessionKind) ([]SessionRecord, error)

	// PutOnce stores a one-time value under key until expiresAt, replacing
	// any value already there. Flows and exchange tokens use it.
	PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error

	// TakeOnce atomically returns and removes the value under key. When
	// several callers take the same key at once exactly one gets the value;
	// the others, and every later caller, get ErrNotFound. An expired value
	// is ErrNotFound.
	TakeOnce(ctx context.Context, key string) ([]byte, error)

	// AcquireLease takes the lease named key for ttl (positive) on behalf
	// of owner, a random token the caller chose. It succeeds when the lease is free,
	// expired, or already held by owner (which extends it), and returns
	// ErrLeaseHeld otherwise. It never waits.
	AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) error

	// ReleaseLease frees the lease named key if owner holds it. Releasing a
	// lease held by someone else, or one that is free, is a no-op.
	ReleaseLease(ctx context.Context, key, owner string) error

	// PurgeExpired deletes expired sessions, one-time values and leases, and
	// reports how many records it removed. A backend that expires records by
	// itself, such as Redis, may have nothing left to remove and report 0.
	PurgeExpired(ctx context.Context) (int, error)
}

// IdleSessionLister is an optional Store capability. The janitor
// (Manager.RunJanitor) uses it to refresh sessions whose grant has been idle
// for a while, before the authorization server lets their refresh token
// die. Stores without it still work; their idle sessions simply end after
// Config.InactivityLimit.
type IdleSessionLister interface {
	// ListIdleSessions returns up to limit live sessions whose LastUsedAt
	// is before usedBefore, least recently used first.
	ListIdleSessions(ctx context.Context, usedBefore time.Time, limit int) ([]SessionRecord, error)
}
