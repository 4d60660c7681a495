// Package storetest checks that an [atauth.Store] behaves as the interface's
// documentation says. Every adapter in this module runs it, and so should a
// store you write yourself.
//
// Run takes a factory so that every subtest gets a store of its own; the
// factory registers any cleanup with t.Cleanup. The subtests run in
// parallel and use keys unique to each run, so a factory may also hand out
// stores on one shared database. RunShared takes a factory of two Store
// values on one backend, as two processes of an application would have, and
// checks that leases, one-time values and compare-and-swap hold across them.
//
// Run the suite under the race detector:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) atauth.Store {
//			db := openTestDB(t) // for example a fresh schema, dropped in t.Cleanup
//			return mystore.New(db)
//		})
//	}
//
//	func TestStoreShared(t *testing.T) {
//		storetest.RunShared(t, func(t *testing.T) (atauth.Store, atauth.Store) {
//			db := openTestDB(t)
//			return mystore.New(db), mystore.New(db)
//		})
//	}
//
// The suite uses the real clock: expiry subtests sleep for a few hundred
// milliseconds, and times are compared with a tolerance of one millisecond
// because SQL backends round them.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

// timeTolerance is how far a stored time may drift from the one given.
const timeTolerance = time.Millisecond

// Run checks the Store contract against stores made by newStore, one per
// subtest.
func Run(t *testing.T, newStore func(t *testing.T) atauth.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, atauth.Store)
	}{
		{"SessionRoundTrip", testSessionRoundTrip},
		{"SessionCopiesInput", testSessionCopiesInput},
		{"GetMissing", testGetMissing},
		{"CreateDuplicate", testCreateDuplicate},
		{"Update", testUpdate},
		{"UpdateStale", testUpdateStale},
		{"UpdateMissing", testUpdateMissing},
		{"UpdateContention", func(t *testing.T, s atauth.Store) { testUpdateContention(t, s, s) }},
		{"Delete", testDelete},
		{"SessionExpired", testSessionExpired},
		{"SessionExpires", testSessionExpires},
		{"ListByGroup", testListByGroup},
		{"ListByDID", testListByDID},
		{"Once", testOnce},
		{"OnceExpires", testOnceExpires},
		{"OnceContention", func(t *testing.T, s atauth.Store) { testOnceContention(t, s, s) }},
		{"Lease", func(t *testing.T, s atauth.Store) { testLease(t, s, s) }},
		{"LeaseExpires", testLeaseExpires},
		{"LeaseExtend", testLeaseExtend},
		{"PurgeExpired", testPurgeExpired},
		{"CanceledContext", testCanceledContext},
		{"LargeValue", testLargeValue},
		{"OddKeys", testOddKeys},
		{"ListIdleSessions", testListIdleSessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// RunShared checks that two Store values made by newPair, sharing one
// backend, see each other's writes and exclude each other: a lease held
// through one is held for the other, and compare-and-swap and TakeOnce have
// exactly one winner when callers are split across both.
func RunShared(t *testing.T, newPair func(t *testing.T) (atauth.Store, atauth.Store)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b atauth.Store)
	}{
		{"Visibility", testSharedVisibility},
		{"Lease", testLease},
		{"OnceContention", testOnceContention},
		{"UpdateContention", testUpdateContention},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := newPair(t)
			tt.fn(t, a, b)
		})
	}
}

// unique returns a prefix for the keys of one subtest, so that subtests do
// not collide when a factory hands out stores on one backend.
func unique() string {
	return strings.ToLower(rand.Text()[:12])
}

// zone is a non-UTC location: times go in with it, so a store that drops
// the offset is caught.
var zone = time.FixedZone("UTC+05:30", 5*3600+30*60)

func record(id, did, group string, kind atauth.SessionKind, created time.Time) atauth.SessionRecord {
	rec := atauth.SessionRecord{
		ID:         id,
		DID:        did,
		Handle:     "alice.example.com",
		Kind:       kind,
		GroupID:    group,
		Scopes:     "atproto transition:generic",
		CreatedAt:  created.In(zone),
		ExpiresAt:  time.Now().Add(time.Hour).In(zone),
		LastUsedAt: created.Add(time.Second).In(zone),
		Sealed:     []byte("sealed:" + id),
	}
	if kind == atauth.KindDeveloper {
		rec.Name = "ci deploy"
		rec.Prefix = "atd_1234"
	}
	return rec
}

// diffRecord describes how got differs from want, comparing times with
// timeTolerance and regardless of location.
func diffRecord(got, want atauth.SessionRecord) []string {
	var d []string
	str := func(field, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s: got %q, want %q", field, g, w))
		}
	}
	str("ID", got.ID, want.ID)
	str("DID", got.DID, want.DID)
	str("Handle", got.Handle, want.Handle)
	str("Kind", string(got.Kind), string(want.Kind))
	str("GroupID", got.GroupID, want.GroupID)
	str("Name", got.Name, want.Name)
	str("Prefix", got.Prefix, want.Prefix)
	str("Scopes", got.Scopes, want.Scopes)
	if !sameTime(got.CreatedAt, want.CreatedAt) {
		d = append(d, fmt.Sprintf("CreatedAt: got %v, want %v", got.CreatedAt, want.CreatedAt))
	}
	if !sameTime(got.ExpiresAt, want.ExpiresAt) {
		d = append(d, fmt.Sprintf("ExpiresAt: got %v, want %v", got.ExpiresAt, want.ExpiresAt))
	}
	if !sameTime(got.LastUsedAt, want.LastUsedAt) {
		d = append(d, fmt.Sprintf("LastUsedAt: got %v, want %v", got.LastUsedAt, want.LastUsedAt))
	}
	if got.Version != want.Version {
		d = append(d, fmt.Sprintf("Version: got %d, want %d", got.Version, want.Version))
	}
	if !bytes.Equal(got.Sealed, want.Sealed) {
		d = append(d, fmt.Sprintf("Sealed: got %d bytes %.32q, want %d bytes %.32q", len(got.Sealed), got.Sealed, len(want.Sealed), want.Sealed))
	}
	return d
}

func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return -timeTolerance <= d && d <= timeTolerance
}

// checkGet fails t unless id holds want.
func checkGet(t *testing.T, s atauth.Store, id string, want atauth.SessionRecord) {
	t.Helper()
	got, err := s.GetSession(context.Background(), id)
	if err != nil {
		t.Fatalf("GetSession(%q): got error %v, want nil", id, err)
	}
	for _, d := range diffRecord(got, want) {
		t.Errorf("GetSession(%q): %s", id, d)
	}
}

// checkMissing fails t unless id is ErrNotFound.
func checkMissing(t *testing.T, s atauth.Store, id string) {
	t.Helper()
	got, err := s.GetSession(context.Background(), id)
	if !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("GetSession(%q): got %+v, %v, want ErrNotFound", id, got, err)
	}
}

func mustCreate(t *testing.T, s atauth.Store, rec atauth.SessionRecord) {
	t.Helper()
	if err := s.CreateSession(context.Background(), rec); err != nil {
		t.Fatalf("CreateSession(%q): got %v, want nil", rec.ID, err)
	}
}

// ids lists the IDs of recs, for messages and comparisons.
func ids(recs []atauth.SessionRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func checkIDs(t *testing.T, call string, got []atauth.SessionRecord, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: got error %v, want nil", call, err)
		return
	}
	if got == nil {
		t.Errorf("%s: got a nil slice, want a non-nil slice", call)
	}
	if g := ids(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: got IDs %q, want %q", call, g, want)
	}
}

// race runs n calls of f at once and returns their errors.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func testSessionRoundTrip(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	for _, rec := range []atauth.SessionRecord{
		record(u+"-browser", "did:plc:"+u, u+"-group", atauth.KindBrowser, now),
		record(u+"-dev", "did:web:"+u+".example.com", "", atauth.KindDeveloper, now.Add(-time.Minute)),
	} {
		rec.Version = 42 // CreateSession stores 1 whatever it is given
		if err := s.CreateSession(ctx, rec); err != nil {
			t.Fatalf("CreateSession(%q): got %v, want nil", rec.ID, err)
		}
		rec.Version = 1
		checkGet(t, s, rec.ID, rec)
	}

	empty := record(u+"-empty", "did:plc:"+u, "", atauth.KindBrowser, now)
	empty.Handle, empty.Scopes, empty.Sealed = "", "", nil
	mustCreate(t, s, empty)
	empty.Version = 1
	checkGet(t, s, empty.ID, empty)
}

func testSessionCopiesInput(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	rec := record(u, "did:plc:"+u, "", atauth.KindBrowser, time.Now())
	sealed := []byte("original")
	rec.Sealed = sealed
	mustCreate(t, s, rec)
	copy(sealed, "CHANGED!")

	want := rec
	want.Sealed = []byte("original")
	want.Version = 1
	checkGet(t, s, rec.ID, want)

	upd := want
	sealed = []byte("updated!")
	upd.Sealed = sealed
	if err := s.UpdateSession(ctx, upd); err != nil {
		t.Fatalf("UpdateSession: got %v, want nil", err)
	}
	copy(sealed, "CHANGED!")
	want.Sealed = []byte("updated!")
	want.Version = 2
	checkGet(t, s, rec.ID, want)
}

func testGetMissing(t *testing.T, s atauth.Store) {
	checkMissing(t, s, unique()+"-never-created")
}

func testCreateDuplicate(t *testing.T, s atauth.Store) {
	u := unique()
	rec := record(u, "did:plc:"+u, "", atauth.KindBrowser, time.Now())
	mustCreate(t, s, rec)

	dup := rec
	dup.Handle = "mallory.example.com"
	dup.Sealed = []byte("other")
	if err := s.CreateSession(context.Background(), dup); !errors.Is(err, atauth.ErrConflict) {
		t.Errorf("CreateSession of an existing ID: got %v, want ErrConflict", err)
	}
	rec.Version = 1
	checkGet(t, s, rec.ID, rec)
}

func testUpdate(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	rec := record(u, "did:plc:"+u, u+"-old-group", atauth.KindBrowser, now)
	mustCreate(t, s, rec)

	got, err := s.GetSession(ctx, rec.ID)
	if err != nil {
		t.Fatalf("GetSession: got %v, want nil", err)
	}
	got.Handle = "alice2.example.com"
	got.GroupID = u + "-new-group"
	got.Scopes = "atproto"
	got.CreatedAt = now.Add(-time.Second)
	got.ExpiresAt = now.Add(2 * time.Hour)
	got.LastUsedAt = now.Add(time.Minute)
	got.Sealed = []byte("rotated tokens")
	if err := s.UpdateSession(ctx, got); err != nil {
		t.Fatalf("UpdateSession with the stored version: got %v, want nil", err)
	}
	want := got
	want.Version = 2
	checkGet(t, s, rec.ID, want)

	// A second update from the new version succeeds too.
	want.Handle = "alice3.example.com"
	if err := s.UpdateSession(ctx, want); err != nil {
		t.Fatalf("UpdateSession with version 2: got %v, want nil", err)
	}
	want.Version = 3
	checkGet(t, s, rec.ID, want)

	// Lists follow the new group.
	l, err := s.ListSessionsByGroup(ctx, u+"-old-group")
	checkIDs(t, "ListSessionsByGroup(old group)", l, err)
	l, err = s.ListSessionsByGroup(ctx, u+"-new-group")
	checkIDs(t, "ListSessionsByGroup(new group)", l, err, rec.ID)
}

func testUpdateStale(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	rec := record(u, "did:plc:"+u, "", atauth.KindBrowser, time.Now())
	mustCreate(t, s, rec)
	rec.Version = 1
	fresh := rec
	fresh.Handle = "first.example.com"
	if err := s.UpdateSession(ctx, fresh); err != nil {
		t.Fatalf("UpdateSession from version 1: got %v, want nil", err)
	}
	for _, v := range []int64{1, 0, 3, 100} {
		stale := rec
		stale.Version = v
		stale.Handle = "stale.example.com"
		if err := s.UpdateSession(ctx, stale); !errors.Is(err, atauth.ErrConflict) {
			t.Errorf("UpdateSession with version %d over stored version 2: got %v, want ErrConflict", v, err)
		}
	}
	fresh.Version = 2
	checkGet(t, s, rec.ID, fresh)
}

func testUpdateMissing(t *testing.T, s atauth.Store) {
	u := unique()
	rec := record(u, "did:plc:"+u, "", atauth.KindBrowser, time.Now())
	rec.Version = 1
	if err := s.UpdateSession(context.Background(), rec); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("UpdateSession of a missing session: got %v, want ErrNotFound", err)
	}
	checkMissing(t, s, rec.ID)
}

// Contention checks repeat for at least minRounds rounds and at least
// minDuration, at most maxRounds: a check-then-act bug in an in-memory store
// has a window of nanoseconds that a single round on few CPUs will miss,
// while a networked store interleaves in a few rounds.
const (
	minRounds   = 8
	maxRounds   = 2000
	minDuration = 250 * time.Millisecond
)

// repeat runs f with a fresh key until the limits above are met or t fails.
func repeat(t *testing.T, f func(key string)) {
	u := unique()
	start := time.Now()
	for round := 0; round < maxRounds && !t.Failed(); round++ {
		if round >= minRounds && time.Since(start) >= minDuration {
			return
		}
		f(fmt.Sprintf("%s-%d", u, round))
	}
}

// testUpdateContention has 32 callers, split across a and b, update one
// session from the same version: exactly one may win.
func testUpdateContention(t *testing.T, a, b atauth.Store) {
	repeat(t, func(id string) { updateContention(t, a, b, id) })
}

func updateContention(t *testing.T, a, b atauth.Store, id string) {
	const n = 32
	ctx := context.Background()
	mustCreate(t, a, record(id, "did:plc:"+id, "", atauth.KindBrowser, time.Now()))
	base, err := b.GetSession(ctx, id)
	if err != nil {
		t.Fatalf("GetSession: got %v, want nil", err)
	}
	errs := race(n, func(i int) error {
		rec := base
		rec.Handle = fmt.Sprintf("writer%d.example.com", i)
		rec.Sealed = []byte(rec.Handle)
		s := a
		if i%2 == 1 {
			s = b
		}
		return s.UpdateSession(ctx, rec)
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("UpdateSession(%q): writers %d and %d both succeeded, want exactly one", id, winner, i)
			}
			winner = i
		case !errors.Is(err, atauth.ErrConflict):
			t.Errorf("UpdateSession(%q) by writer %d: got %v, want nil or ErrConflict", id, i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("UpdateSession(%q): no writer of %d succeeded, want exactly one", id, n)
	}
	want := base
	want.Handle = fmt.Sprintf("writer%d.example.com", winner)
	want.Sealed = []byte(want.Handle)
	want.Version = base.Version + 1
	checkGet(t, a, id, want)
}

func testDelete(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	rec := record(u, "did:plc:"+u, u+"-group", atauth.KindBrowser, time.Now())
	mustCreate(t, s, rec)
	if err := s.DeleteSession(ctx, rec.ID); err != nil {
		t.Fatalf("DeleteSession: got %v, want nil", err)
	}
	checkMissing(t, s, rec.ID)
	if err := s.DeleteSession(ctx, rec.ID); err != nil {
		t.Errorf("DeleteSession of a deleted session: got %v, want nil", err)
	}
	if err := s.DeleteSession(ctx, u+"-never-created"); err != nil {
		t.Errorf("DeleteSession of a missing session: got %v, want nil", err)
	}
	l, err := s.ListSessionsByGroup(ctx, rec.GroupID)
	checkIDs(t, "ListSessionsByGroup after delete", l, err)
	l, err = s.ListSessionsByDID(ctx, rec.DID, rec.Kind)
	checkIDs(t, "ListSessionsByDID after delete", l, err)

	if err := s.UpdateSession(ctx, atauth.SessionRecord{ID: rec.ID, Version: 1}); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("UpdateSession of a deleted session: got %v, want ErrNotFound", err)
	}
	// The ID is free again.
	mustCreate(t, s, rec)
	rec.Version = 1
	checkGet(t, s, rec.ID, rec)
}

func testSessionExpired(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	live := record(u+"-live", "did:plc:"+u, u+"-group", atauth.KindBrowser, now)
	expired := record(u+"-expired", "did:plc:"+u, u+"-group", atauth.KindBrowser, now.Add(-2*time.Hour))
	expired.ExpiresAt = now.Add(-time.Second)
	mustCreate(t, s, live)
	mustCreate(t, s, expired)

	checkMissing(t, s, expired.ID)
	l, err := s.ListSessionsByGroup(ctx, u+"-group")
	checkIDs(t, "ListSessionsByGroup", l, err, live.ID)
	l, err = s.ListSessionsByDID(ctx, "did:plc:"+u, atauth.KindBrowser)
	checkIDs(t, "ListSessionsByDID", l, err, live.ID)
	expired.Version = 1
	if err := s.UpdateSession(ctx, expired); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("UpdateSession of an expired session: got %v, want ErrNotFound", err)
	}
}

func testSessionExpires(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	rec := record(u, "did:plc:"+u, u+"-group", atauth.KindBrowser, now)
	rec.ExpiresAt = now.Add(300 * time.Millisecond)
	mustCreate(t, s, rec)
	rec.Version = 1
	checkGet(t, s, rec.ID, rec)
	l, err := s.ListSessionsByGroup(ctx, rec.GroupID)
	checkIDs(t, "ListSessionsByGroup before expiry", l, err, rec.ID)

	time.Sleep(time.Until(rec.ExpiresAt) + 50*time.Millisecond)

	checkMissing(t, s, rec.ID)
	l, err = s.ListSessionsByGroup(ctx, rec.GroupID)
	checkIDs(t, "ListSessionsByGroup after expiry", l, err)
	l, err = s.ListSessionsByDID(ctx, rec.DID, rec.Kind)
	checkIDs(t, "ListSessionsByDID after expiry", l, err)
	if err := s.UpdateSession(ctx, rec); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("UpdateSession after expiry: got %v, want ErrNotFound", err)
	}
	// Only a live session makes CreateSession conflict.
	again := record(u, "did:plc:"+u, "", atauth.KindBrowser, time.Now())
	if err := s.CreateSession(ctx, again); err != nil {
		t.Fatalf("CreateSession over an expired session: got %v, want nil", err)
	}
	again.Version = 1
	checkGet(t, s, again.ID, again)
}

func testListByGroup(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	g := u + "-g_"
	// Created out of order; the list is oldest first.
	// IDs do not sort in creation order, so that sorting by ID fails.
	second := record(u+"-a", "did:plc:"+u+"b", g, atauth.KindBrowser, now.Add(-time.Minute))
	third := record(u+"-b", "did:plc:"+u+"a", g, atauth.KindBrowser, now)
	first := record(u+"-c", "did:plc:"+u+"a", g, atauth.KindBrowser, now.Add(-time.Hour))
	for _, rec := range []atauth.SessionRecord{second, third, first} {
		mustCreate(t, s, rec)
	}
	// Groups whose ids a LIKE pattern or a prefix match would confuse.
	mustCreate(t, s, record(u+"-x", "did:plc:"+u+"a", u+"-gx", atauth.KindBrowser, now))
	mustCreate(t, s, record(u+"-p", "did:plc:"+u+"a", u+"-g%", atauth.KindBrowser, now))
	mustCreate(t, s, record(u+"-long", "did:plc:"+u+"a", g+"2", atauth.KindBrowser, now))
	mustCreate(t, s, record(u+"-none", "did:plc:"+u+"a", "", atauth.KindBrowser, now))

	got, err := s.ListSessionsByGroup(ctx, g)
	checkIDs(t, "ListSessionsByGroup", got, err, first.ID, second.ID, third.ID)
	if len(got) == 3 {
		first.Version = 1
		for _, d := range diffRecord(got[0], first) {
			t.Errorf("ListSessionsByGroup: first record: %s", d)
		}
	}
	got, err = s.ListSessionsByGroup(ctx, u+"-g%")
	checkIDs(t, "ListSessionsByGroup(g%)", got, err, u+"-p")
	got, err = s.ListSessionsByGroup(ctx, u+"-no-such-group")
	checkIDs(t, "ListSessionsByGroup(no match)", got, err)
	// Sessions in no group are not a group of their own.
	got, err = s.ListSessionsByGroup(ctx, "")
	checkIDs(t, `ListSessionsByGroup("")`, got, err)
}

func testListByDID(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	did := "did:plc:" + u
	// IDs do not sort in creation order, so that sorting by ID fails.
	b2 := record(u+"-ba", did, "", atauth.KindBrowser, now)
	b1 := record(u+"-bz", did, u+"-group", atauth.KindBrowser, now.Add(-time.Hour))
	d2 := record(u+"-da", did, "", atauth.KindDeveloper, now.Add(-time.Minute))
	d1 := record(u+"-dz", did, "", atauth.KindDeveloper, now.Add(-2*time.Hour))
	other := record(u+"-other", did+"x", "", atauth.KindBrowser, now.Add(-3*time.Hour))
	for _, rec := range []atauth.SessionRecord{b2, d2, b1, other, d1} {
		mustCreate(t, s, rec)
	}

	got, err := s.ListSessionsByDID(ctx, did, atauth.KindBrowser)
	checkIDs(t, "ListSessionsByDID(browser)", got, err, b1.ID, b2.ID)
	got, err = s.ListSessionsByDID(ctx, did, atauth.KindDeveloper)
	checkIDs(t, "ListSessionsByDID(developer)", got, err, d1.ID, d2.ID)
	if len(got) == 2 {
		d1.Version = 1
		for _, d := range diffRecord(got[0], d1) {
			t.Errorf("ListSessionsByDID(developer): first record: %s", d)
		}
	}
	got, err = s.ListSessionsByDID(ctx, "did:plc:"+u+"-nobody", atauth.KindBrowser)
	checkIDs(t, "ListSessionsByDID(no match)", got, err)
}

func testOnce(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	exp := time.Now().Add(time.Minute)

	value := []byte("flow state")
	if err := s.PutOnce(ctx, u, value, exp); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	copy(value, "CHANGED!")
	got, err := s.TakeOnce(ctx, u)
	if err != nil || string(got) != "flow state" {
		t.Errorf("TakeOnce: got %q, %v, want %q, nil", got, err, "flow state")
	}
	if got, err := s.TakeOnce(ctx, u); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("second TakeOnce: got %q, %v, want ErrNotFound", got, err)
	}
	if got, err := s.TakeOnce(ctx, u+"-never-put"); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("TakeOnce of a missing key: got %q, %v, want ErrNotFound", got, err)
	}

	// PutOnce replaces.
	if err := s.PutOnce(ctx, u+"-r", []byte("one"), exp); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	if err := s.PutOnce(ctx, u+"-r", []byte("two"), exp); err != nil {
		t.Fatalf("PutOnce over an existing key: got %v, want nil", err)
	}
	if got, err := s.TakeOnce(ctx, u+"-r"); err != nil || string(got) != "two" {
		t.Errorf("TakeOnce after replacement: got %q, %v, want %q, nil", got, err, "two")
	}

	// An expired value is gone; so is a value replaced by an expired one.
	if err := s.PutOnce(ctx, u+"-e", []byte("old"), time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("PutOnce with a past expiry: got %v, want nil", err)
	}
	if got, err := s.TakeOnce(ctx, u+"-e"); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("TakeOnce of an expired value: got %q, %v, want ErrNotFound", got, err)
	}
	if err := s.PutOnce(ctx, u+"-re", []byte("live"), exp); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	if err := s.PutOnce(ctx, u+"-re", []byte("dead"), time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("PutOnce with a past expiry over a live value: got %v, want nil", err)
	}
	if got, err := s.TakeOnce(ctx, u+"-re"); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("TakeOnce of a value replaced by an expired one: got %q, %v, want ErrNotFound", got, err)
	}
}

func testOnceExpires(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	exp := time.Now().Add(300 * time.Millisecond)
	for _, k := range []string{u + "-1", u + "-2"} {
		if err := s.PutOnce(ctx, k, []byte("v"), exp); err != nil {
			t.Fatalf("PutOnce(%q): got %v, want nil", k, err)
		}
	}
	if got, err := s.TakeOnce(ctx, u+"-1"); err != nil || string(got) != "v" {
		t.Errorf("TakeOnce before expiry: got %q, %v, want %q, nil", got, err, "v")
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if got, err := s.TakeOnce(ctx, u+"-2"); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("TakeOnce after expiry: got %q, %v, want ErrNotFound", got, err)
	}
}

// testOnceContention has 64 callers, split across a and b, take one key:
// exactly one may get the value.
func testOnceContention(t *testing.T, a, b atauth.Store) {
	repeat(t, func(key string) { onceContention(t, a, b, key) })
}

func onceContention(t *testing.T, a, b atauth.Store, key string) {
	const n = 64
	ctx := context.Background()
	if err := a.PutOnce(ctx, key, []byte("prize"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	values := make([][]byte, n)
	errs := race(n, func(i int) error {
		s := a
		if i%2 == 1 {
			s = b
		}
		var err error
		values[i], err = s.TakeOnce(ctx, key)
		return err
	})
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			if string(values[i]) != "prize" {
				t.Errorf("TakeOnce(%q) by taker %d: got %q, want %q", key, i, values[i], "prize")
			}
		case !errors.Is(err, atauth.ErrNotFound):
			t.Errorf("TakeOnce(%q) by taker %d: got %v, want nil or ErrNotFound", key, i, err)
		}
	}
	if winners != 1 {
		t.Errorf("TakeOnce(%q) by %d takers: got %d winners, want 1", key, n, winners)
	}
}

// testLease checks lease ownership, with the second owner acting through b.
func testLease(t *testing.T, a, b atauth.Store) {
	ctx := context.Background()
	u := unique()
	key, alice, bob := u+"-lease", u+"-alice", u+"-bob"
	acquire := func(s atauth.Store, owner string, want error) {
		t.Helper()
		if err := s.AcquireLease(ctx, key, owner, time.Minute); !errors.Is(err, want) {
			t.Errorf("AcquireLease by %s: got %v, want %v", strings.TrimPrefix(owner, u+"-"), err, want)
		}
	}
	release := func(s atauth.Store, owner string) {
		t.Helper()
		if err := s.ReleaseLease(ctx, key, owner); err != nil {
			t.Errorf("ReleaseLease by %s: got %v, want nil", strings.TrimPrefix(owner, u+"-"), err)
		}
	}

	release(a, alice) // releasing a free lease is a no-op
	acquire(a, alice, nil)
	acquire(a, alice, nil) // the owner may re-acquire
	acquire(b, bob, atauth.ErrLeaseHeld)
	release(b, bob) // not bob's: a no-op
	acquire(b, bob, atauth.ErrLeaseHeld)

	// Another key is independent.
	if err := b.AcquireLease(ctx, u+"-other", bob, time.Minute); err != nil {
		t.Errorf("AcquireLease of another key: got %v, want nil", err)
	}

	release(a, alice)
	release(a, alice)
	acquire(b, bob, nil)
	acquire(a, alice, atauth.ErrLeaseHeld)
	release(b, bob)
	acquire(a, alice, nil)
}

func testLeaseExpires(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	key, alice, bob := u+"-lease", u+"-alice", u+"-bob"
	if err := s.AcquireLease(ctx, key, alice, 200*time.Millisecond); err != nil {
		t.Fatalf("AcquireLease: got %v, want nil", err)
	}
	if err := s.AcquireLease(ctx, key, bob, time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Fatalf("AcquireLease by another owner before expiry: got %v, want ErrLeaseHeld", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := s.AcquireLease(ctx, key, bob, time.Minute); err != nil {
		t.Fatalf("AcquireLease of an expired lease by another owner: got %v, want nil", err)
	}
	if err := s.ReleaseLease(ctx, key, alice); err != nil {
		t.Errorf("ReleaseLease by the former owner: got %v, want nil", err)
	}
	if err := s.AcquireLease(ctx, key, alice, time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Errorf("AcquireLease by the former owner: got %v, want ErrLeaseHeld", err)
	}
}

func testLeaseExtend(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	key, alice, bob := u+"-lease", u+"-alice", u+"-bob"
	const ttl = 400 * time.Millisecond
	if err := s.AcquireLease(ctx, key, alice, ttl); err != nil {
		t.Fatalf("AcquireLease: got %v, want nil", err)
	}
	time.Sleep(250 * time.Millisecond)
	if err := s.AcquireLease(ctx, key, alice, ttl); err != nil {
		t.Fatalf("AcquireLease by the owner: got %v, want nil", err)
	}
	// Past the first expiry, before the extended one.
	time.Sleep(250 * time.Millisecond)
	if err := s.AcquireLease(ctx, key, bob, ttl); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Errorf("AcquireLease by another owner after the owner extended the lease: got %v, want ErrLeaseHeld", err)
	}
}

func testPurgeExpired(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	now := time.Now()
	for i := range 2 {
		rec := record(fmt.Sprintf("%s-expired%d", u, i), "did:plc:"+u, u+"-group", atauth.KindBrowser, now.Add(-2*time.Hour))
		rec.ExpiresAt = now.Add(-time.Minute)
		mustCreate(t, s, rec)
	}
	live := record(u+"-live", "did:plc:"+u, u+"-group", atauth.KindBrowser, now)
	mustCreate(t, s, live)
	if err := s.PutOnce(ctx, u+"-once-expired", []byte("x"), now.Add(-time.Minute)); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	if err := s.PutOnce(ctx, u+"-once-live", []byte("y"), now.Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	if err := s.AcquireLease(ctx, u+"-lease-expired", u+"-owner", 10*time.Millisecond); err != nil {
		t.Fatalf("AcquireLease: got %v, want nil", err)
	}
	if err := s.AcquireLease(ctx, u+"-lease-live", u+"-owner", time.Minute); err != nil {
		t.Fatalf("AcquireLease: got %v, want nil", err)
	}
	time.Sleep(50 * time.Millisecond)

	const expired = 4 // two sessions, one value, one lease
	n, err := s.PurgeExpired(ctx)
	if err != nil {
		t.Fatalf("PurgeExpired: got %v, want nil", err)
	}
	// A backend that expires records by itself (Redis) may have nothing
	// left to remove; one that removes them here must count them all.
	if n != 0 && n < expired {
		t.Errorf("PurgeExpired: got %d records removed, want 0 (native expiry) or at least %d", n, expired)
	}

	live.Version = 1
	checkGet(t, s, live.ID, live)
	l, err := s.ListSessionsByGroup(ctx, u+"-group")
	checkIDs(t, "ListSessionsByGroup after purge", l, err, live.ID)
	if got, err := s.TakeOnce(ctx, u+"-once-live"); err != nil || string(got) != "y" {
		t.Errorf("TakeOnce of a live value after purge: got %q, %v, want %q, nil", got, err, "y")
	}
	if err := s.AcquireLease(ctx, u+"-lease-live", u+"-other", time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
		t.Errorf("AcquireLease of a live lease after purge: got %v, want ErrLeaseHeld", err)
	}
	if err := s.AcquireLease(ctx, u+"-lease-expired", u+"-other", time.Minute); err != nil {
		t.Errorf("AcquireLease of a purged lease: got %v, want nil", err)
	}
}

func testCanceledContext(t *testing.T, s atauth.Store) {
	u := unique()
	rec := record(u, "did:plc:"+u, u+"-group", atauth.KindBrowser, time.Now())
	// Records exist, so that a store cannot answer from an empty table
	// without looking at the context.
	mustCreate(t, s, rec)
	if err := s.PutOnce(context.Background(), u, []byte("x"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec.Version = 1
	calls := []struct {
		name string
		call func() error
	}{
		{"CreateSession", func() error {
			return s.CreateSession(ctx, record(u+"-new", "did:plc:"+u, "", atauth.KindBrowser, time.Now()))
		}},
		{"GetSession", func() error { _, err := s.GetSession(ctx, rec.ID); return err }},
		{"UpdateSession", func() error { return s.UpdateSession(ctx, rec) }},
		{"DeleteSession", func() error { return s.DeleteSession(ctx, rec.ID) }},
		{"ListSessionsByGroup", func() error { _, err := s.ListSessionsByGroup(ctx, rec.GroupID); return err }},
		{"ListSessionsByDID", func() error { _, err := s.ListSessionsByDID(ctx, rec.DID, rec.Kind); return err }},
		{"PutOnce", func() error { return s.PutOnce(ctx, u+"-new", []byte("x"), time.Now().Add(time.Minute)) }},
		{"TakeOnce", func() error { _, err := s.TakeOnce(ctx, u); return err }},
		{"AcquireLease", func() error { return s.AcquireLease(ctx, u, u+"-owner", time.Minute) }},
		{"ReleaseLease", func() error { return s.ReleaseLease(ctx, u, u+"-owner") }},
		{"PurgeExpired", func() error { _, err := s.PurgeExpired(ctx); return err }},
	}
	for _, c := range calls {
		if err := c.call(); err == nil {
			t.Errorf("%s with a canceled context: got nil error, want an error", c.name)
		}
	}
}

func testLargeValue(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	big := make([]byte, 64<<10)
	rand.Read(big)

	rec := record(u, "did:plc:"+u, "", atauth.KindBrowser, time.Now())
	rec.Sealed = big
	mustCreate(t, s, rec)
	rec.Version = 1
	checkGet(t, s, rec.ID, rec)

	rec.Sealed = bytes.Repeat([]byte{0, 0xff}, 32<<10)
	if err := s.UpdateSession(ctx, rec); err != nil {
		t.Fatalf("UpdateSession with 64 KiB: got %v, want nil", err)
	}
	rec.Version = 2
	checkGet(t, s, rec.ID, rec)

	if err := s.PutOnce(ctx, u, big, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce with 64 KiB: got %v, want nil", err)
	}
	if got, err := s.TakeOnce(ctx, u); err != nil || !bytes.Equal(got, big) {
		t.Errorf("TakeOnce of 64 KiB: got %d bytes, %v, want the %d bytes put", len(got), err, len(big))
	}
}

func testOddKeys(t *testing.T, s atauth.Store) {
	ctx := context.Background()
	u := unique()
	keys := []string{
		u + ":a",
		u + "/a",
		u + "%2Fa",
		u + "%",
		u + "_",
		u + "*",
		u + "A",
		u + "a",
		u + `!"#$&'()+,-.;<=>?@[\]^` + "`{|}~",
		u + strings.Repeat("k", 128-len(u)),
	}
	now := time.Now()
	recs := make([]atauth.SessionRecord, len(keys))
	for i, k := range keys {
		rec := record(k, "did:web:"+k, "g:"+k, atauth.KindBrowser, now.Add(time.Duration(i)*time.Millisecond))
		rec.Sealed = []byte(k)
		mustCreate(t, s, rec)
		rec.Version = 1
		recs[i] = rec
		if err := s.PutOnce(ctx, k, []byte(k), now.Add(time.Minute)); err != nil {
			t.Fatalf("PutOnce(%q): got %v, want nil", k, err)
		}
		if err := s.AcquireLease(ctx, k, "owner:"+k, time.Minute); err != nil {
			t.Fatalf("AcquireLease(%q): got %v, want nil", k, err)
		}
	}
	for i, k := range keys {
		checkGet(t, s, k, recs[i])
		l, err := s.ListSessionsByGroup(ctx, "g:"+k)
		checkIDs(t, fmt.Sprintf("ListSessionsByGroup(%q)", "g:"+k), l, err, k)
		l, err = s.ListSessionsByDID(ctx, "did:web:"+k, atauth.KindBrowser)
		checkIDs(t, fmt.Sprintf("ListSessionsByDID(%q)", "did:web:"+k), l, err, k)
		if got, err := s.TakeOnce(ctx, k); err != nil || string(got) != k {
			t.Errorf("TakeOnce(%q): got %q, %v, want %q, nil", k, got, err, k)
		}
		if err := s.AcquireLease(ctx, k, "other", time.Minute); !errors.Is(err, atauth.ErrLeaseHeld) {
			t.Errorf("AcquireLease(%q) by another owner: got %v, want ErrLeaseHeld", k, err)
		}
	}
}

func testSharedVisibility(t *testing.T, a, b atauth.Store) {
	ctx := context.Background()
	u := unique()
	rec := record(u, "did:plc:"+u, u+"-group", atauth.KindBrowser, time.Now())
	mustCreate(t, a, rec)
	rec.Version = 1
	checkGet(t, b, rec.ID, rec)
	l, err := b.ListSessionsByGroup(ctx, rec.GroupID)
	checkIDs(t, "ListSessionsByGroup through the second store", l, err, rec.ID)
	if err := b.CreateSession(ctx, rec); !errors.Is(err, atauth.ErrConflict) {
		t.Errorf("CreateSession through the second store: got %v, want ErrConflict", err)
	}

	rec.Handle = "updated.example.com"
	if err := b.UpdateSession(ctx, rec); err != nil {
		t.Fatalf("UpdateSession through the second store: got %v, want nil", err)
	}
	rec.Version = 2
	checkGet(t, a, rec.ID, rec)
	if err := a.DeleteSession(ctx, rec.ID); err != nil {
		t.Fatalf("DeleteSession: got %v, want nil", err)
	}
	checkMissing(t, b, rec.ID)

	if err := a.PutOnce(ctx, u, []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("PutOnce: got %v, want nil", err)
	}
	if got, err := b.TakeOnce(ctx, u); err != nil || string(got) != "v" {
		t.Errorf("TakeOnce through the second store: got %q, %v, want %q, nil", got, err, "v")
	}
	if got, err := a.TakeOnce(ctx, u); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("TakeOnce through the first store after the second took: got %q, %v, want ErrNotFound", got, err)
	}
}

// testListIdleSessions checks the optional IdleSessionLister capability.
func testListIdleSessions(t *testing.T, s atauth.Store) {
	lister, ok := s.(atauth.IdleSessionLister)
	if !ok {
		t.Skip("the store does not implement atauth.IdleSessionLister (optional)")
	}
	ctx := context.Background()
	u := unique()
	now := time.Now()
	// The lister sees the whole store: a cutoff far in the past keeps other
	// subtests' sessions out.
	base := now.Add(-1000 * time.Hour)
	mk := func(name string, lastUsed time.Time) atauth.SessionRecord {
		rec := record(u+"-"+name, "did:plc:"+u, "", atauth.KindDeveloper, base.Add(-time.Hour))
		rec.LastUsedAt = lastUsed
		return rec
	}
	oldest := mk("oldest", base.Add(-3*time.Hour))
	older := mk("older", base.Add(-2*time.Hour))
	recent := mk("recent", base.Add(time.Hour))
	expired := mk("expired", base.Add(-4*time.Hour))
	expired.ExpiresAt = now.Add(-time.Minute)
	for _, rec := range []atauth.SessionRecord{recent, older, oldest, expired} {
		mustCreate(t, s, rec)
	}
	got, err := lister.ListIdleSessions(ctx, base, 10)
	checkIDs(t, "ListIdleSessions", got, err, oldest.ID, older.ID)
	got, err = lister.ListIdleSessions(ctx, base, 1)
	checkIDs(t, "ListIdleSessions with limit 1", got, err, oldest.ID)
	got, err = lister.ListIdleSessions(ctx, base.Add(-10*time.Hour), 10)
	checkIDs(t, "ListIdleSessions with nothing idle", got, err)
}
