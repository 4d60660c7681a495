package atauth

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimiter decides whether a request may proceed. The handlers consult
// it for the unauthenticated endpoints (/auth/start, /auth/callback,
// /auth/exchange) and the flow starters, keyed by client address: never by
// a credential the client chose, which would give an attacker a fresh bucket
// per made-up token.
type RateLimiter interface {
	// Allow reports whether a request from key may proceed now; when not,
	// retryAfter says when one will.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration)
}

// Default rate limits: enough for a household behind one address signing
// in several accounts, not for a script hammering the sign-in.
const (
	DefaultRateLimitPerMinute = 60
	DefaultRateLimitBurst     = 30
)

// maxBuckets bounds the memory of the in-memory limiter; past it, buckets
// that have refilled are dropped first.
const maxBuckets = 100_000

// TokenBucket is an in-memory RateLimiter: each key gets a bucket of Burst
// tokens that refills at PerMinute tokens a minute. It is safe for
// concurrent use and starts no goroutine; full buckets are dropped lazily.
// Several instances each keep their own buckets.
type TokenBucket struct {
	perMinute float64
	burst     float64
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewTokenBucket returns a TokenBucket. now is its clock; nil means
// time.Now.
func NewTokenBucket(perMinute, burst int, now func() time.Time) *TokenBucket {
	if now == nil {
		now = time.Now
	}
	return &TokenBucket{perMinute: float64(perMinute), burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// Allow takes a token from key's bucket.
func (l *TokenBucket) Allow(_ context.Context, key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Minutes()*l.perMinute)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.perMinute * float64(time.Minute))
	return false, wait
}

// sweep drops the buckets that have refilled, which cost nothing to
// recreate; if none has, it starts over.
func (l *TokenBucket) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Minutes()*l.perMinute >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}

// NoRateLimit is a RateLimiter that allows everything, for apps that limit
// rates in front of atauth, and for load tests.
var NoRateLimit RateLimiter = noLimit{}

type noLimit struct{}

func (noLimit) Allow(context.Context, string) (bool, time.Duration) { return true, 0 }

// clientAddr returns the address a request comes from: the peer, or, when
// the peer is a trusted proxy, the last address in X-Forwarded-For that is
// not one.
func (m *Manager) clientAddr(r *http.Request) string {
	peer := remoteIP(r.RemoteAddr)
	if !m.trustedProxy(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		ip = ip.Unmap()
		if !m.trustedProxy(ip) {
			return ip.String()
		}
	}
	return peer.String()
}

func remoteIP(addr string) netip.Addr {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

func (m *Manager) trustedProxy(ip netip.Addr) bool {
	for _, p := range m.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// rateLimited answers 429 with Retry-After when the client is over its
// limit.
func (m *Manager) rateLimited(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok, wait := m.limiter.Allow(r.Context(), m.clientAddr(r))
		if !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			writeError(w, http.StatusTooManyRequests, "too many requests, try again later")
			return
		}
		next(w, r)
	}
}
