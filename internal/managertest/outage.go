package managertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
)

// Outage is a Store whose network to its backend a test can cut, without
// stopping the backend.
type Outage struct {
	// Store reaches the backend through the link that Cut breaks.
	Store atauth.Store
	// Direct reaches the same backend around the link. RunOutage reads
	// through it what the app wrote.
	Direct atauth.Store
	// Cut breaks the link: open connections close and new ones fail.
	Cut func()
	// Restore mends the link.
	Restore func()
}

// Phases of an outage run.
const (
	phaseBefore = iota
	phaseCut
	phaseRestored
	phaseCount
)

// The state of a run is 2*phase while a phase lasts, and odd while the
// link is being cut or restored, so that an answer is counted in a phase
// only if the whole request ran inside it.
func stable(state int32) (phase int, ok bool) { return int(state / 2), state%2 == 0 }

var phaseNames = [phaseCount]string{"before the cut", "during the cut", "after the restore"}

// How long RunOutage's phases last.
const (
	outageWarmup   = 300 * time.Millisecond
	outageLength   = 2 * time.Second
	outageDeadline = 30 * time.Second
)

// outageWorkers is how many browsers sign in at once.
const outageWorkers = 4

// confirmedSession is a session whose id the app handed to a browser.
type confirmedSession struct {
	id, did string
	phase   int
}

// outageRun is the state of one RunOutage.
type outageRun struct {
	t     *testing.T
	app   *App
	state atomic.Int32

	failures atomic.Int64 // reported failures, to cap the noise

	mu        sync.Mutex
	confirmed []confirmedSession
	pairs     [][2]string // initiator and added session of a confirmed add-account
	// ok and unavailable count answers that began and ended in one phase;
	// logins and added count confirmed flows by the phase they began in.
	ok, unavailable, logins, added [phaseCount]int
	straddling                     int
	// retriedTakes counts flows lost because a one-time value was taken
	// by an attempt whose answer the cut lost, and its retry found nothing.
	retriedTakes int
}

// RunOutage serves a Manager on o.Store over HTTP and has browsers sign in,
// add a second account to their group and call /auth/me in a loop, while
// the link to the Store's backend is cut for a second and then restored.
//
// It checks that: while the link is cut every answer that needs the Store
// is 503 with a JSON {"detail"} (the callback, which always redirects,
// lands with auth_error=server_error), and nothing panics; after the
// restore sign-ins and add-accounts work again on the same app, without a
// restart; every session whose exchange answered 200, before, during or
// after the cut, still authenticates; and the Store is consistent: each
// group's index lists exactly the sessions that name the group, a group
// holds an account at most once, and both sessions of a confirmed
// add-account share a group. An add-account cut between the initiator's
// group update and the new session can leave the initiator alone in a
// group; RunOutage logs how many such groups of one it finds.
func RunOutage(t *testing.T, o Outage) {
	handles := make([]string, 0, 2*outageWorkers)
	for w := range outageWorkers {
		handles = append(handles, fmt.Sprintf("p%d.test", w))
	}
	for w := range outageWorkers {
		handles = append(handles, fmt.Sprintf("s%d.test", w))
	}
	network, accts := NewNetwork(t, handles...)
	r := &outageRun{t: t, app: NewApp(t, network, o.Store)}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range outageWorkers {
		wg.Go(func() { r.work(stop, accts[w], accts[outageWorkers+w]) })
	}
	defer func() {
		// On an early return too, the workers stop before the test ends.
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// Before: run until every worker has added an account.
	if !r.waitFor(phaseBefore, outageWarmup) {
		t.Fatalf("before the cut: fewer than %d add-accounts within %v", outageWorkers, outageDeadline)
	}
	r.state.Store(2*phaseCut - 1)
	o.Cut()
	r.state.Store(2 * phaseCut)
	time.Sleep(outageLength)
	r.state.Store(2*phaseRestored - 1)
	o.Restore()
	r.state.Store(2 * phaseRestored)
	restored := time.Now()
	if !r.waitFor(phaseRestored, 0) {
		t.Errorf("after the restore: fewer than %d sign-ins and add-accounts within %v", outageWorkers, outageDeadline)
	}
	recovery := time.Since(restored)
	close(stop)
	wg.Wait()

	r.mu.Lock()
	for p := range phaseCount {
		t.Logf("%s: %d answers ok, %d answers 503; of the flows begun then, %d sign-ins and %d add-accounts confirmed",
			phaseNames[p], r.ok[p], r.unavailable[p], r.logins[p], r.added[p])
	}
	t.Logf("%d answers straddled a phase change; sign-ins and add-accounts recovered %v after the restore",
		r.straddling, recovery.Round(time.Millisecond))
	t.Logf("%d flows lost to a one-time value taken by an attempt whose answer the cut lost, then missing on retry", r.retriedTakes)
	if r.unavailable[phaseCut] == 0 {
		t.Errorf("during the cut: no 503 answer, want every answer that needs the Store to be 503")
	}
	confirmed, pairs := r.confirmed, r.pairs
	r.mu.Unlock()

	if n := r.app.Panics(); n != 0 {
		t.Errorf("handler panics: got %d, want 0", n)
	}
	r.checkConfirmed(confirmed)
	checkConsistent(t, o.Direct, accts, pairs)
}

// waitFor waits at least min, and until every worker has a confirmed
// sign-in and add-account that began in phase p. It reports false after
// outageDeadline.
func (r *outageRun) waitFor(p int, min time.Duration) bool {
	start := time.Now()
	for {
		r.mu.Lock()
		done := r.logins[p] >= outageWorkers && r.added[p] >= outageWorkers
		r.mu.Unlock()
		if done && time.Since(start) >= min {
			return true
		}
		if time.Since(start) > outageDeadline {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errorf reports a failure, up to a cap, so that a broken adapter fails
// with a readable log.
func (r *outageRun) errorf(format string, args ...any) {
	if r.failures.Add(1) <= 20 {
		r.t.Errorf(format, args...)
	}
}

// work signs into primary, adds secondary, and calls /auth/me, with a new
// browser each round, until stop closes.
func (r *outageRun) work(stop <-chan struct{}, primary, secondary atauthtest.Account) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		b := r.app.NewBrowser()
		p := r.phase()
		id, ok := r.flow(b, "/auth/start?handle="+url.QueryEscape(primary.Handle), "", primary, "")
		if !ok {
			time.Sleep(10 * time.Millisecond) // as a user would, before trying again
			continue
		}
		r.confirm(confirmedSession{id: id, did: primary.DID, phase: p}, "")
		r.me(b, primary.DID)

		p = r.phase()
		added, ok := r.flow(b, "/auth/add-account/start", `{"handle":"`+secondary.Handle+`"}`, secondary, "true")
		if !ok {
			continue
		}
		r.confirm(confirmedSession{id: added, did: secondary.DID, phase: p}, id)
		r.me(b, secondary.DID, primary.DID)
	}
}

// confirm records a session the app confirmed to the browser; initiator is
// the session that added it, or "".
func (r *outageRun) confirm(s confirmedSession, initiator string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.confirmed = append(r.confirmed, s)
	if initiator == "" {
		r.logins[s.phase]++
		return
	}
	r.added[s.phase]++
	r.pairs = append(r.pairs, [2]string{initiator, s.id})
}

// flow runs a sign-in (a GET of startPath) or an add-account (a POST of
// startBody to startPath) for acct through the browser, and returns the
// session id the exchange set, and whether every step succeeded.
// accountAdded is the account_added the landing URL must carry.
func (r *outageRun) flow(b *Browser, startPath, startBody string, acct atauthtest.Account, accountAdded string) (string, bool) {
	ctx := context.Background()
	var authURL string
	if startBody == "" {
		resp, ok, _ := r.send(b, "GET", startPath, "", false, http.StatusSeeOther, 0)
		if !ok {
			return "", false
		}
		if resp.Location == nil {
			r.errorf("%v: no Location", resp)
			return "", false
		}
		authURL = resp.Location.String()
	} else {
		resp, ok, _ := r.send(b, "POST", startPath, startBody, true, http.StatusOK, 0)
		if !ok {
			return "", false
		}
		var v struct {
			AuthURL string `json:"auth_url"`
		}
		if err := json.Unmarshal(resp.Body, &v); err != nil || v.AuthURL == "" {
			r.errorf("%v: no auth_url", resp)
			return "", false
		}
		authURL = v.AuthURL
	}
	cb, err := r.app.Network.Approve(ctx, authURL, acct.Handle, acct.Password)
	if err != nil {
		r.errorf("Approve for %s: %v", acct.Handle, err)
		return "", false
	}
	// The callback redirects whatever happens: it needs no Store to
	// answer 303.
	resp, ok, before := r.send(b, "GET", cb, "", false, http.StatusSeeOther, -1)
	if !ok {
		return "", false
	}
	if resp.Location == nil {
		r.errorf("%v: no Location", resp)
		return "", false
	}
	q := resp.Location.Query()
	switch code := q.Get("auth_error"); {
	case code == "":
	case code == atauth.CodeExpired && !before:
		// A client that retries (go-redis does) may have taken the
		// flow with an attempt whose answer the cut lost: the retry
		// finds it gone.
		r.mu.Lock()
		r.retriedTakes++
		r.mu.Unlock()
		return "", false
	case code == atauth.CodeServerError && !before:
		return "", false
	default:
		r.errorf("callback for %s: landed with auth_error=%q, want success, or %q once the cut began",
			acct.Handle, code, atauth.CodeServerError)
		return "", false
	}
	xt := q.Get("exchange_token")
	if xt == "" || q.Get("account_added") != accountAdded {
		r.errorf("callback for %s: landed on %v, want an exchange token and account_added=%q", acct.Handle, q, accountAdded)
		return "", false
	}
	prev := b.SessionCookie()
	body, _ := json.Marshal(map[string]string{"exchange_token": xt})
	if _, ok, _ := r.send(b, "POST", "/auth/exchange", string(body), true, http.StatusOK, http.StatusUnauthorized); !ok {
		return "", false
	}
	id := b.SessionCookie()
	if id == "" || id == prev {
		r.errorf("exchange for %s answered 200 but set no new session cookie", acct.Handle)
		return "", false
	}
	return id, true
}

// me checks /auth/me: the active account is did, and the group holds at
// least linked.
func (r *outageRun) me(b *Browser, did string, linked ...string) {
	resp, ok, _ := r.send(b, "GET", "/auth/me", "", true, http.StatusOK, 0)
	if !ok {
		return
	}
	var u atauth.User
	if err := json.Unmarshal(resp.Body, &u); err != nil {
		r.errorf("%v: %v", resp, err)
		return
	}
	if u.DID != did {
		r.errorf("/auth/me: got did %q, want %q", u.DID, did)
	}
	if len(linked) == 0 {
		return
	}
	for _, l := range append(linked, did) {
		if !slices.ContainsFunc(u.LinkedAccounts, func(a atauth.Account) bool { return a.DID == l }) {
			r.errorf("/auth/me: linked accounts %v lack %s", u.LinkedAccounts, l)
		}
	}
}

// phase returns the current phase, counting a transition as the phase it
// leaves.
func (r *outageRun) phase() int {
	return int(r.state.Load()) / 2
}

// send makes a request and checks its answer: want, or 503 with a JSON
// detail. Anything else, a transport error included (which is what a
// handler panic looks like to a client), is a failure, except lost: the
// status of a one-time value found missing, which a retried take can cause
// once the cut began (0 for none). A lost of -1 says that the endpoint
// answers want without the Store. send reports whether the answer was
// want, and whether the request ran wholly before the cut.
func (r *outageRun) send(b *Browser, method, path, body string, fetch bool, want, lost int) (resp *Response, ok, before bool) {
	s0 := r.state.Load()
	resp, err := b.Do(context.Background(), method, path, body, fetch)
	s1 := r.state.Load()
	p, inside := stable(s0)
	inside = inside && s0 == s1
	before = inside && p == phaseBefore
	if err != nil {
		r.errorf("%s (%s): %v", path, phaseNames[r.phase()], err)
		return nil, false, before
	}
	r.mu.Lock()
	switch {
	case !inside:
		r.straddling++
	case resp.Status == want:
		r.ok[p]++
	case resp.Status == http.StatusServiceUnavailable:
		r.unavailable[p]++
	}
	r.mu.Unlock()
	switch {
	case resp.Status == want:
		if inside && p == phaseCut && lost >= 0 {
			r.errorf("%v: succeeded during the cut, want 503: is the link really cut?", resp)
		}
		return resp, true, before
	case resp.Status == http.StatusServiceUnavailable:
		if _, ok := resp.Detail(); !ok {
			r.errorf("%v: 503 without a JSON detail", resp)
		}
		if before {
			r.errorf("%v: 503 before the cut", resp)
		}
	case resp.Status == lost && !before:
		r.mu.Lock()
		r.retriedTakes++
		r.mu.Unlock()
	default:
		r.errorf("%v (%s): want %d or 503", resp, phaseNames[r.phase()], want)
	}
	return resp, false, before
}

// checkConfirmed checks that every confirmed session still authenticates,
// on the same app.
func (r *outageRun) checkConfirmed(confirmed []confirmedSession) {
	ctx := context.Background()
	lost := 0
	for _, c := range confirmed {
		s, err := r.app.Manager.SessionByID(ctx, c.id)
		if err != nil {
			lost++
			r.t.Errorf("a session confirmed %s: SessionByID: %v", phaseNames[c.phase], err)
			continue
		}
		if s.DID != c.did {
			r.t.Errorf("a session confirmed %s: got DID %q, want %q", phaseNames[c.phase], s.DID, c.did)
		}
	}
	r.t.Logf("%d confirmed sessions checked, %d lost", len(confirmed), lost)
}

// checkConsistent reads every browser session of accts through direct and
// checks the group indexes and the confirmed add-accounts.
func checkConsistent(t *testing.T, direct atauth.Store, accts []atauthtest.Account, pairs [][2]string) {
	ctx := context.Background()
	byGroup := make(map[string][]string)
	total := 0
	for _, a := range accts {
		recs, err := direct.ListSessionsByDID(ctx, a.DID, atauth.KindBrowser)
		if err != nil {
			t.Fatalf("ListSessionsByDID(%s) after the outage: %v", a.Handle, err)
		}
		total += len(recs)
		for _, rec := range recs {
			if rec.GroupID != "" {
				byGroup[rec.GroupID] = append(byGroup[rec.GroupID], rec.ID)
			}
		}
	}
	alone := 0
	for g, want := range byGroup {
		recs, err := direct.ListSessionsByGroup(ctx, g)
		if err != nil {
			t.Fatalf("ListSessionsByGroup after the outage: %v", err)
		}
		var got []string
		dids := make(map[string]bool)
		for _, rec := range recs {
			got = append(got, rec.ID)
			if dids[rec.DID] {
				t.Errorf("group %.8s…: holds %s twice", g, rec.DID)
			}
			dids[rec.DID] = true
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("group %.8s…: the index lists %d sessions, %d sessions name the group", g, len(got), len(want))
		}
		if len(want) == 1 {
			alone++
		}
	}
	for _, p := range pairs {
		a, errA := direct.GetSession(ctx, StoreKey(p[0]))
		b, errB := direct.GetSession(ctx, StoreKey(p[1]))
		if errA != nil || errB != nil {
			continue // checkConfirmed reports it
		}
		if a.GroupID == "" || a.GroupID != b.GroupID {
			t.Errorf("a confirmed add-account: initiator in group %q, added session in %q, want one group", a.GroupID, b.GroupID)
		}
	}
	t.Logf("store after the outage: %d browser sessions, %d groups, %d of them groups of one (an add-account cut after the initiator joined its new group)",
		total, len(byGroup), alone)
}

// cutAfterGroup is a Store that, once armed, cuts the link right after the
// first update that gives a session a group: between the two writes of an
// add-account, the initiator's group and the new session.
type cutAfterGroup struct {
	atauth.Store
	cut   func()
	armed atomic.Bool
	fired atomic.Bool
}

func (s *cutAfterGroup) UpdateSession(ctx context.Context, rec atauth.SessionRecord) error {
	err := s.Store.UpdateSession(ctx, rec)
	if err == nil && rec.GroupID != "" && s.armed.CompareAndSwap(true, false) {
		s.cut()
		s.fired.Store(true)
	}
	return err
}

// RunAddAccountCut signs a browser in, then cuts the link to the Store
// exactly between the two writes of an add-account: after the initiator's
// record took its new group, before the added session is written. The
// callback must fail cleanly (auth_error=server_error, the new grant
// revoked), and after the restore the initiator must still be signed in,
// alone in its group, which is harmless; the store must hold no trace of
// the added account; and adding it again must work.
func RunAddAccountCut(t *testing.T, o Outage) {
	network, accts := NewNetwork(t, "p0.test", "s0.test")
	primary, secondary := accts[0], accts[1]
	store := &cutAfterGroup{Store: o.Store, cut: o.Cut}
	r := &outageRun{t: t, app: NewApp(t, network, store)}
	ctx := context.Background()

	b := r.app.NewBrowser()
	id, ok := r.flow(b, "/auth/start?handle="+url.QueryEscape(primary.Handle), "", primary, "")
	if !ok {
		t.Fatal("signing in before the cut failed")
	}
	grants := network.ActiveGrants(secondary.DID)
	store.armed.Store(true)
	r.state.Store(2*phaseCut - 1) // answers may now be 503
	addBody := `{"handle":"` + secondary.Handle + `"}`
	if _, ok := r.flow(b, "/auth/add-account/start", addBody, secondary, "true"); ok {
		t.Fatal("an add-account cut between its writes succeeded")
	}
	if !store.fired.Load() {
		t.Fatal("the add-account never gave the initiator a group: the cut did not happen between the writes")
	}
	o.Restore()
	r.state.Store(2 * phaseRestored)

	if got := network.ActiveGrants(secondary.DID); got != grants {
		t.Errorf("grants of the account whose adding failed: got %d, want %d (the new grant revoked)", got, grants)
	}
	if got := b.SessionCookie(); got != id {
		t.Errorf("session cookie after the failed add-account: changed, want the initiator's")
	}
	r.me(b, primary.DID, primary.DID)
	rec, err := o.Direct.GetSession(ctx, StoreKey(id))
	if err != nil {
		t.Fatalf("the initiator after the restore: %v", err)
	}
	if rec.GroupID == "" {
		t.Errorf("the initiator after the cut: no group, want the group the first write gave it")
	} else if members, err := o.Direct.ListSessionsByGroup(ctx, rec.GroupID); err != nil || len(members) != 1 {
		t.Errorf("the initiator's group after the cut: got %d members, %v, want the initiator alone", len(members), err)
	}
	if recs, err := o.Direct.ListSessionsByDID(ctx, secondary.DID, atauth.KindBrowser); err != nil || len(recs) != 0 {
		t.Errorf("sessions of the account whose adding failed: got %d, %v, want none", len(recs), err)
	}

	// Trying again works, into the same group.
	added, ok := r.flow(b, "/auth/add-account/start", addBody, secondary, "true")
	if !ok {
		t.Fatal("adding the account again after the restore failed")
	}
	r.me(b, secondary.DID, primary.DID)
	if a, err := o.Direct.GetSession(ctx, StoreKey(added)); err != nil || a.GroupID != rec.GroupID {
		t.Errorf("the added session: got group %.8q, %v, want the initiator's %.8q", a.GroupID, err, rec.GroupID)
	}
	if n := r.app.Panics(); n != 0 {
		t.Errorf("handler panics: got %d, want 0", n)
	}
}
