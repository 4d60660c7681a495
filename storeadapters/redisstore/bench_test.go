package redisstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

// benchSession stores a session with a Sealed part of a typical size and
// returns a Store on it.
func benchSession(b *testing.B) (*Store, atauth.SessionRecord) {
	client := newTestClient(b)
	s := New(client, WithPrefix(testPrefix(b, client)))
	now := time.Now()
	rec := atauth.SessionRecord{
		ID:         "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		DID:        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
		Handle:     "alice.example.com",
		Kind:       atauth.KindBrowser,
		GroupID:    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		Scopes:     "atproto transition:generic",
		CreatedAt:  now,
		ExpiresAt:  now.Add(time.Hour),
		LastUsedAt: now,
		Sealed:     bytes.Repeat([]byte{0xa5}, 1500),
	}
	if err := s.CreateSession(context.Background(), rec); err != nil {
		b.Fatal(err)
	}
	return s, rec
}

// BenchmarkGetSession reads a session through the Store: one GET and the
// decoding. Compare it with BenchmarkBareRead.
func BenchmarkGetSession(b *testing.B) {
	s, rec := benchSession(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, rec.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareRead reads the same key with go-redis alone, without decoding:
// the floor GetSession is measured against.
func BenchmarkBareRead(b *testing.B) {
	s, rec := benchSession(b)
	ctx := context.Background()
	key := s.sessionKey(rec.ID)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.client.Get(ctx, key).Result(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is the decoding alone.
func BenchmarkDecode(b *testing.B) {
	rec := atauth.SessionRecord{ID: "id", DID: "did:plc:ewvi7nxzyoun6zhxrhs64oiz", Kind: atauth.KindBrowser, Sealed: bytes.Repeat([]byte{1}, 1500)}
	v := string(encode(rec))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(rec.ID, v); err != nil {
			b.Fatal(err)
		}
	}
}
