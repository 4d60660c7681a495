package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// fakeNetwork serves DID documents and resolveHandle from one server.
type fakeNetwork struct {
	docs    map[string]map[string]any
	handles map[string]string
	status  int // resolveHandle answers this status when set
	body    string
}

func (f *fakeNetwork) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/xrpc/com.atproto.identity.resolveHandle" {
		if f.status != 0 {
			w.WriteHeader(f.status)
			_, _ = w.Write([]byte(f.body))
			return
		}
		did, ok := f.handles[r.URL.Query().Get("handle")]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"InvalidRequest","message":"Unable to resolve handle"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"did": did})
		return
	}
	doc, ok := f.docs[strings.TrimPrefix(r.URL.Path, "/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(doc)
}

func doc(did, handle, serviceID, pds string) map[string]any {
	d := map[string]any{"id": did, "alsoKnownAs": []string{"at://" + handle}}
	if pds != "" {
		d["service"] = []map[string]string{{"id": serviceID, "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}}
	}
	return d
}

const (
	aliceDID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	bobDID   = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	carlDID  = "did:plc:cccccccccccccccccccccccc"
	daveDID  = "did:plc:dddddddddddddddddddddddd"
)

func newResolver(t *testing.T, f *fakeNetwork, insecure bool) *Resolver {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &Resolver{HTTP: srv.Client(), PLCURL: srv.URL, HandleResolverURL: srv.URL, Insecure: insecure}
}

func standardNetwork() *fakeNetwork {
	return &fakeNetwork{
		docs: map[string]map[string]any{
			aliceDID: doc(aliceDID, "alice.test", "#atproto_pds", "http://pds.test:2583"),
			bobDID:   doc(bobDID, "bob.test", bobDID+"#atproto_pds", "https://pds.example.com/"),
			carlDID:  doc(carlDID, "someone-else.test", "#atproto_pds", "https://pds.example.com"),
			daveDID:  doc(daveDID, "dave.test", "#atproto_pds", ""),
		},
		handles: map[string]string{
			"alice.test": aliceDID, "bob.test": bobDID, "carl.test": carlDID,
			"someone-else.test": aliceDID, "dave.test": daveDID,
		},
	}
}

func TestLookupHandle(t *testing.T) {
	r := newResolver(t, standardNetwork(), true)
	ctx := context.Background()

	got, err := r.LookupHandle(ctx, "Alice.Test")
	if err != nil {
		t.Fatal(err)
	}
	if got.DID != aliceDID || got.Handle != "alice.test" || got.PDS != "http://pds.test:2583" {
		t.Errorf("relative service id: got %+v", got)
	}
	got, err = r.LookupHandle(ctx, "bob.test")
	if err != nil {
		t.Fatal(err)
	}
	if got.PDS != "https://pds.example.com" {
		t.Errorf("absolute service id: got PDS %q, want https://pds.example.com", got.PDS)
	}

	for _, tc := range []struct {
		handle string
		want   error
	}{
		{"nobody.test", ErrHandleNotFound},
		{"carl.test", ErrHandleMismatch}, // the document declares another handle
		{"dave.test", ErrNoPDS},
	} {
		if _, err := r.LookupHandle(ctx, syntax.Handle(tc.handle)); !errors.Is(err, tc.want) {
			t.Errorf("LookupHandle(%s): got %v, want %v", tc.handle, err, tc.want)
		}
	}
}

func TestHTTPPDSNeedsInsecure(t *testing.T) {
	r := newResolver(t, standardNetwork(), false)
	if _, err := r.LookupHandle(context.Background(), "alice.test"); !errors.Is(err, ErrNoPDS) {
		t.Errorf("http PDS without Insecure: got %v, want ErrNoPDS", err)
	}
}

func TestLookupDID(t *testing.T) {
	r := newResolver(t, standardNetwork(), true)
	ctx := context.Background()
	got, err := r.LookupDID(ctx, aliceDID)
	if err != nil || got.Handle != "alice.test" {
		t.Errorf("LookupDID(alice): got %+v, %v; want handle alice.test", got, err)
	}
	// carl's document claims a handle that resolves elsewhere: unverified.
	got, err = r.LookupDID(ctx, carlDID)
	if err != nil || got.Handle != "" || got.DID != carlDID {
		t.Errorf("LookupDID(carl): got %+v, %v; want no verified handle", got, err)
	}
	if _, err := r.LookupDID(ctx, "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"); !errors.Is(err, ErrDIDNotFound) {
		t.Errorf("unknown DID: got %v, want ErrDIDNotFound", err)
	}
}

func TestHandleResolverFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"server error", 500, "", ErrResolution},
		{"not a DID", 200, `{"did":"alice"}`, ErrResolution},
		{"not JSON", 200, `<html>`, ErrResolution},
		{"oversized", 200, `{"did":"` + strings.Repeat("a", 8000) + `"}`, ErrResolution},
		{"unknown", 400, `{"error":"InvalidRequest"}`, ErrHandleNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := standardNetwork()
			f.status, f.body = tc.status, tc.body
			r := newResolver(t, f, true)
			if _, err := r.ResolveHandle(context.Background(), "alice.test"); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestLookupRejectsNonIdentifiers(t *testing.T) {
	r := newResolver(t, standardNetwork(), true)
	if _, err := r.Lookup(context.Background(), syntax.AtIdentifier("not an identifier")); err == nil {
		t.Error("Lookup of junk: got nil error")
	}
}
