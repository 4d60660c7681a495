package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/testenv"
	"github.com/atauth/atauth/storeadapters/pgstore"
)

// proxy is a TCP proxy between the store and PostgreSQL that a test can cut
// and restore, to play a network outage without touching the shared
// server.
type proxy struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startProxy listens on a loopback port and forwards to upstream until tb
// ends.
func startProxy(tb testing.TB, upstream string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: %v", err)
	}
	p := &proxy{ln: ln, upstream: upstream, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.serve)
	tb.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the address to connect to instead of the server's.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy and refuses new ones until
// Restore.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// track adds c to the open connections, or closes it and reports false
// while the proxy is cut.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // the listener is closed
		}
		if !p.track(client) {
			continue
		}
		p.wg.Go(func() { p.forward(client) })
	}
}

func (p *proxy) forward(client net.Conn) {
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// Either side closing ends both directions.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

// viaProxy returns the test server's connection string with its host
// replaced by a proxy to it.
func viaProxy(t *testing.T) (dsn string, p *proxy) {
	t.Helper()
	u, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatalf("parsing %s: %v", testenv.PostgresVar, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	p = startProxy(t, host)
	u.Host = p.Addr()
	return u.String(), p
}

// TestOutage cuts the network between the store and PostgreSQL while
// writers run, and checks that operations fail cleanly during the outage,
// that the same pool works again afterwards, and that no confirmed write
// was lost or half applied.
func TestOutage(t *testing.T) {
	t.Parallel()
	admin := newPool(t, nil)
	schema := newSchema(t, admin)
	dsn, prx := viaProxy(t)
	pool := newPoolAt(t, dsn, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	})
	s := pgstore.New(pool, pgstore.WithSchema(schema))
	check := pgstore.New(admin, pgstore.WithSchema(schema)) // reads past the proxy
	ctx := context.Background()

	// Writers: each updates its own session in a loop and remembers the
	// last version the store confirmed. The handle always names the
	// version it was written with, so a half-applied update would show.
	const writers = 4
	now := time.Now()
	confirmed := make([]atomic.Int64, writers)
	for i := range writers {
		rec := atauth.SessionRecord{
			ID: fmt.Sprintf("w%d", i), DID: "did:plc:writer", Kind: atauth.KindBrowser,
			Handle: "v1", Sealed: []byte("v1"), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		}
		if err := s.CreateSession(ctx, rec); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		confirmed[i].Store(1)
	}
	if err := s.PutOnce(ctx, "before", []byte("kept"), now.Add(time.Hour)); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", i)
			for {
				select {
				case <-stop:
					return
				default:
				}
				opCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
				rec, err := s.GetSession(opCtx, id)
				if err == nil {
					v := fmt.Sprintf("v%d", rec.Version+1)
					rec.Handle, rec.Sealed = v, []byte(v)
					if err = s.UpdateSession(opCtx, rec); err == nil {
						confirmed[i].Store(rec.Version + 1)
					}
				}
				cancel()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // as a retrying caller would
				}
			}
		})
	}

	time.Sleep(200 * time.Millisecond)
	prx.Cut()

	// Every method fails, promptly, while the network is down.
	rec := atauth.SessionRecord{ID: "new", DID: "did:plc:x", Kind: atauth.KindBrowser, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	missing := rec
	missing.ID = "never-created"
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"CreateSession", func(ctx context.Context) error { return s.CreateSession(ctx, rec) }},
		{"GetSession", func(ctx context.Context) error { _, err := s.GetSession(ctx, "w0"); return err }},
		{"UpdateSession", func(ctx context.Context) error { return s.UpdateSession(ctx, missing) }},
		{"DeleteSession", func(ctx context.Context) error { return s.DeleteSession(ctx, "w0") }},
		{"ListSessionsByGroup", func(ctx context.Context) error { _, err := s.ListSessionsByGroup(ctx, "g"); return err }},
		{"ListSessionsByDID", func(ctx context.Context) error {
			_, err := s.ListSessionsByDID(ctx, "did:plc:writer", atauth.KindBrowser)
			return err
		}},
		{"PutOnce", func(ctx context.Context) error { return s.PutOnce(ctx, "during", []byte("x"), now.Add(time.Hour)) }},
		{"TakeOnce", func(ctx context.Context) error { _, err := s.TakeOnce(ctx, "before"); return err }},
		{"AcquireLease", func(ctx context.Context) error { return s.AcquireLease(ctx, "lease", "me", time.Minute) }},
		{"ReleaseLease", func(ctx context.Context) error { return s.ReleaseLease(ctx, "lease", "me") }},
		{"PurgeExpired", func(ctx context.Context) error { _, err := s.PurgeExpired(ctx); return err }},
		{"Migrate", s.Migrate},
	}
	const bound = 5 * time.Second
	for _, c := range calls {
		opCtx, cancel := context.WithTimeout(ctx, bound)
		start := time.Now()
		err := c.call(opCtx)
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Errorf("%s during the outage: got nil error, want an error", c.name)
		}
		if errors.Is(err, atauth.ErrNotFound) || errors.Is(err, atauth.ErrConflict) || errors.Is(err, atauth.ErrLeaseHeld) {
			t.Errorf("%s during the outage: got %v, want a connection error, not an answer", c.name, err)
		}
		if took > bound+time.Second {
			t.Errorf("%s during the outage: took %v, want at most %v", c.name, took, bound)
		}
	}
	time.Sleep(200 * time.Millisecond) // writers keep failing meanwhile
	var atCut [writers]int64
	for i := range writers {
		atCut[i] = confirmed[i].Load()
	}

	prx.Restore()
	time.Sleep(300 * time.Millisecond) // writers recover
	close(stop)
	wg.Wait()

	// The same pool works again, for every method.
	for _, c := range calls {
		opCtx, cancel := context.WithTimeout(ctx, bound)
		err := c.call(opCtx)
		cancel()
		switch c.name {
		case "UpdateSession":
			if !errors.Is(err, atauth.ErrNotFound) {
				t.Errorf("%s after the outage: got %v, want ErrNotFound", c.name, err)
			}
		case "CreateSession", "PutOnce":
			// The call during the outage may or may not have reached
			// the server before the cut; either way is fine.
			if err != nil && !errors.Is(err, atauth.ErrConflict) {
				t.Errorf("%s after the outage: got %v, want nil", c.name, err)
			}
		case "TakeOnce":
			if err != nil {
				t.Errorf("%s after the outage: got %v, want the value put before it", c.name, err)
			}
		default:
			if err != nil {
				t.Errorf("%s after the outage: got %v, want nil", c.name, err)
			}
		}
	}

	// Nothing confirmed was lost, nothing was half written. (w0 was
	// deleted above, on purpose.)
	for i := 1; i < writers; i++ {
		id := fmt.Sprintf("w%d", i)
		got, err := check.GetSession(ctx, id)
		if err != nil {
			t.Errorf("GetSession(%q) after the outage: %v", id, err)
			continue
		}
		if c := confirmed[i].Load(); got.Version < c {
			t.Errorf("GetSession(%q): got version %d, want at least the confirmed %d", id, got.Version, c)
		}
		if want := fmt.Sprintf("v%d", got.Version); got.Handle != want || string(got.Sealed) != want {
			t.Errorf("GetSession(%q): got handle %q and sealed %q at version %d, want both %q", id, got.Handle, got.Sealed, got.Version, want)
		}
		if c := confirmed[i].Load(); c <= atCut[i] || atCut[i] < 2 {
			t.Errorf("writer %d: confirmed version %d before the outage and %d after, want progress both before and after", i, atCut[i], c)
		}
	}
}
