// Package redisstore is an [atauth.Store] on Redis, through
// github.com/redis/go-redis/v9. It needs Redis 6.2 or later.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	mgr, err := atauth.New(atauth.Config{
//		// ...
//		Store: redisstore.New(rdb),
//	})
//
// # Key layout
//
// Every key starts with the prefix, "{atauth}:" unless WithPrefix says
// otherwise:
//
//	{atauth}:s:<id>           session record, a string, expiring at ExpiresAt
//	{atauth}:g:<group>        set of the session ids of a group
//	{atauth}:d:<kind>:<did>   set of the session ids of a DID and kind
//	{atauth}:o:<key>          one-time value, expiring at its expiry
//	{atauth}:l:<key>          lease, holding its owner, expiring after its ttl
//
// A session record is a compact binary encoding of the SessionRecord, so
// GetSession is a single GET. Creating, updating and deleting a session are
// Lua scripts that change the record and both index sets at once, so a set
// never misses a live session. Records expire by Redis's own TTLs; a set lives
// as long as its longest-lived member, and a member whose session has expired
// stays in its set until a list or PurgeExpired drops it. Redis's clock, not
// the application's, decides when a record expires.
//
// # Single node, Sentinel and Cluster
//
// New takes a redis.UniversalClient: a single node (redis.NewClient), a
// Sentinel-managed primary (redis.NewFailoverClient) and a Cluster
// (redis.NewClusterClient) all work. The scripts reach keys they compute
// from the record, such as the old group of an updated session, so on a
// Cluster every key must hash to one slot. The braces in the default prefix
// are a hash tag that does this: all of atauth's keys live in one slot, on one
// primary. This is correct but does not shard atauth's data; a Cluster gives
// it only failover. A prefix without a hash tag works on a single node and
// under Sentinel, but not on a Cluster.
//
// Replication in Redis is asynchronous. After a failover, whether under
// Sentinel or in a Cluster, the writes of the last moments before it may be
// lost: a new session may vanish, a rotated token may roll back to the
// previous one (the next refresh then fails and the user signs in again),
// and a one-time value already taken may be taken once more.
//
// # Persistence
//
// Redis keeps its data in memory. Without persistence (save "" and
// appendonly no) a restart of Redis empties the store: every user is signed
// out, every developer token stops working, and sign-ins in progress fail.
// Nothing leaks, since atauth only ever stores sealed records under hashed
// keys, but everyone has to sign in again. In production enable the
// append-only file (appendonly yes, appendfsync everysec, losing at most
// about a second of writes on a crash) or use a managed Redis with
// persistence. Do not let Redis evict atauth's keys either: every one of
// them has a TTL, so under memory pressure any policy but maxmemory-policy
// noeviction may drop sessions, or an index set, whose sessions then go
// missing from lists until they are written again.
//
// # Retries
//
// go-redis retries a command after a network error (Options.MaxRetries,
// 3 by default). When the first attempt was applied but its reply was lost,
// the retry of an UpdateSession reports ErrConflict, as if another writer
// had won, and atauth reads the session again and finds its own write; the
// retry of a CreateSession reports ErrConflict too, and that sign-in fails.
// The retry of a TakeOnce whose GETDEL was applied finds the value gone and
// reports ErrNotFound: that one sign-in or exchange then fails as expired
// rather than as an outage. Without retries, all of them report the network
// error instead. Either way a
// write is applied whole or not at all: every write is one command or one
// script.
package redisstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/atauth/atauth"
)

// DefaultPrefix is the prefix of every key unless WithPrefix sets another. Its
// braces are a Redis Cluster hash tag.
const DefaultPrefix = "{atauth}:"

// Store is an atauth.Store on Redis. It is safe for concurrent use, and
// several Stores, in one process or many, may share one Redis as long as
// they use the same prefix.
type Store struct {
	client redis.UniversalClient
	prefix string
}

var _ atauth.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key the Store uses. The default is
// DefaultPrefix. On a Redis Cluster the prefix must begin with a hash tag, as
// in "{myapp-auth}:", so that all keys share one slot.
func WithPrefix(prefix string) Option {
	return func(s *Store) { s.prefix = prefix }
}

// New returns a Store on client. The Store does not close client.
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

func (s *Store) sessionKey(id string) string  { return s.prefix + "s:" + id }
func (s *Store) groupKey(group string) string { return s.prefix + "g:" + group }
func (s *Store) onceKey(key string) string    { return s.prefix + "o:" + key }
func (s *Store) leaseKey(key string) string   { return s.prefix + "l:" + key }

// didKey is the key of a DID index set. The kind comes first and atauth's
// kinds contain no colon, so the key is unambiguous whatever the DID holds.
func (s *Store) didKey(did string, kind atauth.SessionKind) string {
	return s.prefix + "d:" + string(kind) + ":" + did
}

// indexKeys returns the KEYS of the session scripts for rec: the session,
// the DID set, and the group set if rec is in a group.
func (s *Store) indexKeys(rec atauth.SessionRecord) []string {
	keys := []string{s.sessionKey(rec.ID), s.didKey(rec.DID, rec.Kind)}
	if rec.GroupID != "" {
		keys = append(keys, s.groupKey(rec.GroupID))
	}
	return keys
}

// wrap prefixes an error from Redis with the operation that failed.
func wrap(op string, err error) error {
	return fmt.Errorf("atauth: redisstore: %s: %w", op, err)
}

// Results of the session scripts.
const (
	resultNotFound = 0
	resultConflict = 1
	resultOK       = 2
)

// CreateSession implements atauth.Store.
func (s *Store) CreateSession(ctx context.Context, rec atauth.SessionRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec.Version = 1
	res, err := createScript.Run(ctx, s.client, s.indexKeys(rec),
		rec.ID, encode(rec), rec.ExpiresAt.UnixMilli()).Int()
	if err != nil {
		return wrap("create session", err)
	}
	if res == resultConflict {
		return atauth.ErrConflict
	}
	return nil
}

// GetSession implements atauth.Store. It is one GET.
func (s *Store) GetSession(ctx context.Context, id string) (atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return atauth.SessionRecord{}, err
	}
	v, err := s.client.Get(ctx, s.sessionKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return atauth.SessionRecord{}, atauth.ErrNotFound
	}
	if err != nil {
		return atauth.SessionRecord{}, wrap("get session", err)
	}
	rec, err := decode(id, v)
	if err != nil {
		return atauth.SessionRecord{}, wrap("get session", err)
	}
	return rec, nil
}

// UpdateSession implements atauth.Store.
func (s *Store) UpdateSession(ctx context.Context, rec atauth.SessionRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	want := binary.BigEndian.AppendUint64(nil, uint64(rec.Version))
	rec.Version++
	res, err := updateScript.Run(ctx, s.client, s.indexKeys(rec),
		rec.ID, encode(rec), rec.ExpiresAt.UnixMilli(), s.prefix, want).Int()
	if err != nil {
		return wrap("update session", err)
	}
	switch res {
	case resultNotFound:
		return atauth.ErrNotFound
	case resultConflict:
		return atauth.ErrConflict
	}
	return nil
}

// DeleteSession implements atauth.Store.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := deleteScript.Run(ctx, s.client, []string{s.sessionKey(id)}, id, s.prefix).Err()
	if err != nil {
		return wrap("delete session", err)
	}
	return nil
}

// ListSessionsByGroup implements atauth.Store. It is one script, which also
// drops the members of the set whose sessions have expired.
func (s *Store) ListSessionsByGroup(ctx context.Context, groupID string) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if groupID == "" {
		return []atauth.SessionRecord{}, nil
	}
	return s.list(ctx, s.groupKey(groupID))
}

// ListSessionsByDID implements atauth.Store. It is one script, which also
// drops the members of the set whose sessions have expired.
func (s *Store) ListSessionsByDID(ctx context.Context, did string, kind atauth.SessionKind) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.list(ctx, s.didKey(did, kind))
}

// list returns the live sessions of the index set key, oldest first.
func (s *Store) list(ctx context.Context, key string) ([]atauth.SessionRecord, error) {
	vals, err := membersScript.Run(ctx, s.client, []string{key}, s.prefix, 1).Slice()
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	out := make([]atauth.SessionRecord, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		id, ok1 := vals[i].(string)
		v, ok2 := vals[i+1].(string)
		if !ok1 || !ok2 {
			return nil, wrap("list sessions", fmt.Errorf("unexpected reply %T, %T", vals[i], vals[i+1]))
		}
		rec, err := decode(id, v)
		if err != nil {
			return nil, wrap("list sessions", err)
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(x, y atauth.SessionRecord) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	return out, nil
}

// PutOnce implements atauth.Store. A value whose expiry has passed deletes
// any value under key and stores nothing.
func (s *Store) PutOnce(ctx context.Context, key string, value []byte, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := s.onceKey(key)
	var err error
	if expiresAt.UnixMilli() <= time.Now().UnixMilli() {
		// SET refuses an expiry at or before the epoch, and one in the
		// recent past would store a value that is never seen.
		err = s.client.Del(ctx, k).Err()
	} else {
		err = s.client.SetArgs(ctx, k, value, redis.SetArgs{ExpireAt: expiresAt}).Err()
	}
	if err != nil {
		return wrap("put once", err)
	}
	return nil
}

// TakeOnce implements atauth.Store with GETDEL. The returned slice belongs to
// the caller.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := s.client.GetDel(ctx, s.onceKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, atauth.ErrNotFound
	}
	if err != nil {
		return nil, wrap("take once", err)
	}
	return v, nil
}

// AcquireLease implements atauth.Store. The lease is a key holding owner,
// set with SET NX PX; the owner extends it with PEXPIRE. A ttl below a
// millisecond is rounded up to one.
func (s *Store) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("atauth: redisstore: lease ttl must be positive")
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	ok, err := acquireScript.Run(ctx, s.client, []string{s.leaseKey(key)}, owner, int64(ms)).Int()
	if err != nil {
		return wrap("acquire lease", err)
	}
	if ok == 0 {
		return atauth.ErrLeaseHeld
	}
	return nil
}

// ReleaseLease implements atauth.Store.
func (s *Store) ReleaseLease(ctx context.Context, key, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, s.client, []string{s.leaseKey(key)}, owner).Err(); err != nil {
		return wrap("release lease", err)
	}
	return nil
}

// PurgeExpired implements atauth.Store. Redis removes expired records by
// itself, so PurgeExpired only walks the index sets, with SCAN, and removes
// the members whose sessions are gone; it reports how many it removed. It
// reads every key of the Redis database to find the sets, so run it every
// hour or so, not per request. Lists drop stale members too, so skipping
// PurgeExpired costs only memory: the sets of groups and DIDs never listed
// again keep their stale members until the sets themselves expire.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var node redis.UniversalClient = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		// With a hash tag in the prefix, every key lives on the primary
		// that serves the prefix's slot.
		c, err := cc.MasterForKey(ctx, s.prefix)
		if err != nil {
			return 0, wrap("purge", err)
		}
		node = c
	}
	match := globEscape(s.prefix) + "[gd]:*"
	n := 0
	iter := node.Scan(ctx, 0, match, 1000).Iterator()
	for iter.Next(ctx) {
		removed, err := membersScript.Run(ctx, node, []string{iter.Val()}, s.prefix, 0).Int()
		if err != nil {
			return n, wrap("purge", err)
		}
		n += removed
	}
	if err := iter.Err(); err != nil {
		return n, wrap("purge", err)
	}
	return n, nil
}

var _ atauth.IdleSessionLister = (*Store)(nil)

// idleBatch is how many session keys one step of ListIdleSessions reads
// in Redis.
const idleBatch = 500

// ListIdleSessions implements atauth.IdleSessionLister. It returns up to
// limit live sessions last used before usedBefore, least recently used
// first; a negative limit means no limit. Like PurgeExpired it walks every
// session key, with SCAN, and a script reads each record's LastUsedAt in
// Redis, so only idle records cross the network. That is a pass over all
// sessions each time: fine for the janitor's few calls an hour, not for a
// request path. (A sorted set by LastUsedAt would avoid it, at the cost of
// one more key to keep in step on every write.)
func (s *Store) ListIdleSessions(ctx context.Context, usedBefore time.Time, limit int) ([]atauth.SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	node, err := s.primary(ctx)
	if err != nil {
		return nil, wrap("list idle sessions", err)
	}
	sessionPrefix := s.sessionKey("")
	seen := make(map[string]bool)
	out := []atauth.SessionRecord{}
	keys := make([]string, 0, idleBatch)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		vals, err := idleScript.Run(ctx, node, keys, usedBefore.Unix(), usedBefore.Nanosecond()).Slice()
		keys = keys[:0]
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(vals); i += 2 {
			k, ok1 := vals[i].(string)
			v, ok2 := vals[i+1].(string)
			if !ok1 || !ok2 {
				return fmt.Errorf("unexpected reply %T, %T", vals[i], vals[i+1])
			}
			id := strings.TrimPrefix(k, sessionPrefix)
			if seen[id] { // SCAN may return a key twice
				continue
			}
			seen[id] = true
			rec, err := decode(id, v)
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		if limit >= 0 && len(out) > 2*limit+idleBatch {
			// Keep memory bounded by limit, not by the idle sessions.
			out = leastRecentlyUsed(out, limit)
		}
		return nil
	}
	iter := node.Scan(ctx, 0, globEscape(sessionPrefix)+"*", idleBatch).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == idleBatch {
			if err := flush(); err != nil {
				return nil, wrap("list idle sessions", err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return nil, wrap("list idle sessions", err)
	}
	if err := flush(); err != nil {
		return nil, wrap("list idle sessions", err)
	}
	return leastRecentlyUsed(out, limit), nil
}

// leastRecentlyUsed sorts recs by LastUsedAt, then ID, and keeps the first
// limit of them (all of them for a negative limit).
func leastRecentlyUsed(recs []atauth.SessionRecord, limit int) []atauth.SessionRecord {
	slices.SortFunc(recs, func(x, y atauth.SessionRecord) int {
		if c := x.LastUsedAt.Compare(y.LastUsedAt); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	if limit >= 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	return recs
}

// primary returns the client to SCAN with: on a Cluster, the primary that
// serves the prefix's slot, where every key lives given a hash tag in the
// prefix.
func (s *Store) primary(ctx context.Context) (redis.UniversalClient, error) {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, s.prefix)
	}
	return s.client, nil
}

// globEscape escapes the characters that SCAN's MATCH pattern treats
// specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}
