package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/testenv"
)

// proxy forwards TCP connections to a target until it is cut. Cutting closes
// every open connection and closes new ones as soon as they are accepted;
// restoring lets new connections through again. It stands between a client
// and the shared Redis, so a test can break the network without touching the
// server other tests use.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// startProxy starts a proxy to target on a free loopback port. It stops when
// tb ends.
func startProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		up, err := p.dial()
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			down.Close()
			up.Close()
			continue
		}
		p.conns[down] = struct{}{}
		p.conns[up] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, down)
		go p.pipe(down, up)
	}
}

func (p *proxy) dial() (net.Conn, error) {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		return nil, errors.New("proxy is cut")
	}
	return net.DialTimeout("tcp", p.target, time.Second)
}

// pipe copies src to dst and closes both when either side ends.
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut breaks every connection and refuses new ones until Restore.
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

func (p *proxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// TestNetworkFault cuts the network between the Store and Redis while
// writers are busy, then restores it. While it is cut every call fails, in
// bounded time; afterwards the same Store and client work again, everything
// confirmed is there, and every session is either fully written, with its
// index entries, or not at all.
func TestNetworkFault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	direct := newTestClient(t)
	prefix := testPrefix(t, direct)
	p := startProxy(t, testenv.Redis(t))
	client := newClient(t, &redis.Options{
		Addr:         p.addr(),
		DialTimeout:  200 * time.Millisecond,
		ReadTimeout:  200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
		PoolTimeout:  300 * time.Millisecond,
	})
	s := New(client, WithPrefix(prefix))
	check := New(direct, WithPrefix(prefix)) // sees Redis directly

	const did = "did:plc:fault"
	long := time.Now().Add(time.Hour)
	newRec := func(id string) atauth.SessionRecord {
		rec := session(id, did, "ga", long)
		rec.Version = 1
		return rec
	}

	before := newRec("before")
	if err := s.CreateSession(ctx, before); err != nil {
		t.Fatalf("CreateSession before the cut: %v", err)
	}
	if err := s.PutOnce(ctx, "once", []byte("v"), long); err != nil {
		t.Fatalf("PutOnce before the cut: %v", err)
	}
	if err := s.AcquireLease(ctx, "lease", "owner", time.Minute); err != nil {
		t.Fatalf("AcquireLease before the cut: %v", err)
	}

	// Writers create sessions in group ga and move them to group gb, and
	// note what Redis confirmed.
	var (
		mu        sync.Mutex
		confirmed = map[string]atauth.SessionRecord{"before": before}
		attempted = []string{"before"}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rec := newRec(fmt.Sprintf("w%d-%d", w, i))
				mu.Lock()
				attempted = append(attempted, rec.ID)
				mu.Unlock()
				if err := s.CreateSession(ctx, rec); err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				mu.Lock()
				confirmed[rec.ID] = rec
				mu.Unlock()
				moved := rec
				moved.GroupID = "gb"
				if err := s.UpdateSession(ctx, moved); err != nil {
					continue
				}
				moved.Version = 2
				mu.Lock()
				confirmed[rec.ID] = moved
				mu.Unlock()
			}
		})
	}

	time.Sleep(200 * time.Millisecond)
	p.Cut()
	time.Sleep(50 * time.Millisecond)

	rec := newRec("during")
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"CreateSession", func(ctx context.Context) error { return s.CreateSession(ctx, rec) }},
		{"GetSession", func(ctx context.Context) error { _, err := s.GetSession(ctx, "before"); return err }},
		{"UpdateSession", func(ctx context.Context) error { return s.UpdateSession(ctx, before) }},
		{"DeleteSession", func(ctx context.Context) error { return s.DeleteSession(ctx, "nothing") }},
		{"ListSessionsByGroup", func(ctx context.Context) error { _, err := s.ListSessionsByGroup(ctx, "ga"); return err }},
		{"ListSessionsByDID", func(ctx context.Context) error {
			_, err := s.ListSessionsByDID(ctx, did, atauth.KindBrowser)
			return err
		}},
		{"PutOnce", func(ctx context.Context) error { return s.PutOnce(ctx, "other", []byte("v"), long) }},
		{"TakeOnce", func(ctx context.Context) error { _, err := s.TakeOnce(ctx, "once"); return err }},
		{"AcquireLease", func(ctx context.Context) error { return s.AcquireLease(ctx, "lease", "owner", time.Minute) }},
		{"ReleaseLease", func(ctx context.Context) error { return s.ReleaseLease(ctx, "other", "owner") }},
		{"PurgeExpired", func(ctx context.Context) error { _, err := s.PurgeExpired(ctx); return err }},
	}
	// The calls run at once: each waits out go-redis's retries.
	const bound = 3 * time.Second
	var calling sync.WaitGroup
	for _, c := range calls {
		calling.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			err := c.call(ctx)
			if err == nil {
				t.Errorf("%s while the network is cut: got nil, want an error", c.name)
			}
			if d := time.Since(start); d > bound {
				t.Errorf("%s while the network is cut: took %v, want at most %v", c.name, d, bound)
			}
			if errors.Is(err, atauth.ErrNotFound) || errors.Is(err, atauth.ErrConflict) || errors.Is(err, atauth.ErrLeaseHeld) {
				t.Errorf("%s while the network is cut: got %v, want a network error, not an answer", c.name, err)
			}
		})
	}
	calling.Wait()

	p.Restore()
	time.Sleep(200 * time.Millisecond) // the writers run on the restored network
	close(stop)
	wg.Wait()

	// The same client recovers on its own: the pool drops the broken
	// connections and dials again. Give it a moment to do so.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.GetSession(ctx, "before")
		if err == nil {
			break
		}

		if time.Now().After(deadline) {
			t.Fatalf("GetSession after the network returned: still %v after 5s", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Everything confirmed is there, as confirmed or, where a later
	// unconfirmed update went through, as updated.
	for id, want := range confirmed {
		got, err := check.GetSession(ctx, id)
		if err != nil {
			t.Errorf("GetSession(%q), confirmed before or during the cut: got %v", id, err)
			continue
		}
		if got.Version < want.Version {
			t.Errorf("GetSession(%q): got version %d, want at least the confirmed %d", id, got.Version, want.Version)
		}
	}
	if v, err := check.TakeOnce(ctx, "once"); err != nil || string(v) != "v" {
		t.Errorf("TakeOnce of the value put before the cut: got %q, %v, want %q", v, err, "v")
	}
	if err := check.AcquireLease(ctx, "lease", "someone else", time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Errorf("AcquireLease of the lease taken before the cut: got %v, want ErrLeaseHeld", err)
	}

	// No half-writes: each session is in exactly the index sets its record
	// names, and nothing else is.
	inSet := func(key string) map[string]bool {
		m, err := direct.SMembers(ctx, prefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		set := make(map[string]bool)
		for _, id := range m {
			set[id] = true
		}
		return set
	}
	ga, gb, byDID := inSet("g:ga"), inSet("g:gb"), inSet("d:browser:"+did)
	for _, id := range attempted {
		got, err := check.GetSession(ctx, id)
		switch {
		case errors.Is(err, atauth.ErrNotFound):
			if ga[id] || gb[id] || byDID[id] {
				t.Errorf("session %q was not written, but is indexed", id)
			}
		case err != nil:
			t.Fatalf("GetSession(%q): %v", id, err)
		default:
			if !byDID[id] || ga[id] != (got.GroupID == "ga") || gb[id] != (got.GroupID == "gb") {
				t.Errorf("session %q in group %q: got in DID set %v, ga %v, gb %v", id, got.GroupID, byDID[id], ga[id], gb[id])
			}
		}
	}

	// And every call works again, through the same Store.
	after := newRec("after")
	if err := s.CreateSession(ctx, after); err != nil {
		t.Errorf("CreateSession after the network returned: %v", err)
	}
	if err := s.UpdateSession(ctx, after); err != nil {
		t.Errorf("UpdateSession after the network returned: %v", err)
	}
	if l, err := s.ListSessionsByDID(ctx, did, atauth.KindBrowser); err != nil || len(l) == 0 {
		t.Errorf("ListSessionsByDID after the network returned: got %d sessions, %v", len(l), err)
	}
	if err := s.PutOnce(ctx, "after", []byte("v"), long); err != nil {
		t.Errorf("PutOnce after the network returned: %v", err)
	}
	if _, err := s.TakeOnce(ctx, "after"); err != nil {
		t.Errorf("TakeOnce after the network returned: %v", err)
	}
	if err := s.AcquireLease(ctx, "lease", "owner", time.Minute); err != nil {
		t.Errorf("AcquireLease by the owner after the network returned: %v", err)
	}
	if err := s.ReleaseLease(ctx, "lease", "owner"); err != nil {
		t.Errorf("ReleaseLease after the network returned: %v", err)
	}
	if _, err := s.PurgeExpired(ctx); err != nil {
		t.Errorf("PurgeExpired after the network returned: %v", err)
	}
	if err := s.DeleteSession(ctx, "after"); err != nil {
		t.Errorf("DeleteSession after the network returned: %v", err)
	}
	mu.Lock()
	t.Logf("%d sessions attempted, %d confirmed", len(attempted), len(confirmed))
	mu.Unlock()
}
