package redisstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/atauth/atauth"
)

// A session record is stored as
//
//	format     1 byte, formatV1
//	Version    8 bytes, big-endian
//	CreatedAt  8 bytes Unix seconds and 4 bytes nanoseconds, big-endian
//	ExpiresAt  the same
//	LastUsedAt the same
//	GroupID, DID, Kind, Handle, Name, Prefix, Scopes, Sealed
//	           each a 4-byte big-endian length and the bytes
//
// The ID is the key and is not repeated. The scripts read the Version and
// the first three strings, which is why they come first and have fixed
// offsets: see luaPrelude. Times keep whole nanoseconds and lose only the
// location.
const (
	formatV1  = 1
	headerLen = 1 + 8 + 3*12
)

var errBadRecord = errors.New("malformed session record")

func encode(rec atauth.SessionRecord) []byte {
	n := headerLen + 8*4 + len(rec.GroupID) + len(rec.DID) + len(rec.Kind) +
		len(rec.Handle) + len(rec.Name) + len(rec.Prefix) + len(rec.Scopes) + len(rec.Sealed)
	b := make([]byte, 0, n)
	b = append(b, formatV1)
	b = binary.BigEndian.AppendUint64(b, uint64(rec.Version))
	b = appendTime(b, rec.CreatedAt)
	b = appendTime(b, rec.ExpiresAt)
	b = appendTime(b, rec.LastUsedAt)
	b = appendField(b, rec.GroupID)
	b = appendField(b, rec.DID)
	b = appendField(b, rec.Kind)
	b = appendField(b, rec.Handle)
	b = appendField(b, rec.Name)
	b = appendField(b, rec.Prefix)
	b = appendField(b, rec.Scopes)
	b = appendField(b, rec.Sealed)
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func appendField[T ~string | ~[]byte](b []byte, f T) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// decode decodes the record stored under id. It works on the string go-redis
// returns, so that the string fields are substrings of it and cost no
// allocation; only Sealed is copied.
func decode(id, v string) (atauth.SessionRecord, error) {
	if len(v) < headerLen || v[0] != formatV1 {
		return atauth.SessionRecord{}, errBadRecord
	}
	d := decoder{s: v[1:]}
	rec := atauth.SessionRecord{ID: id}
	rec.Version = int64(d.uint64())
	rec.CreatedAt = d.time()
	rec.ExpiresAt = d.time()
	rec.LastUsedAt = d.time()
	rec.GroupID = d.field()
	rec.DID = d.field()
	rec.Kind = atauth.SessionKind(d.field())
	rec.Handle = d.field()
	rec.Name = d.field()
	rec.Prefix = d.field()
	rec.Scopes = d.field()
	if sealed := d.field(); len(sealed) > 0 {
		rec.Sealed = []byte(sealed)
	}
	if d.bad || len(d.s) != 0 {
		return atauth.SessionRecord{}, errBadRecord
	}
	return rec, nil
}

// decoder reads big-endian integers and length-prefixed strings from s. A
// read past the end sets bad and returns zero values.
type decoder struct {
	s   string
	bad bool
}

func (d *decoder) next(n int) string {
	if d.bad || n < 0 || len(d.s) < n {
		d.bad = true
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	b := d.next(4)
	if len(b) < 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (d *decoder) uint64() uint64 {
	hi := d.uint32()
	return uint64(hi)<<32 | uint64(d.uint32())
}

func (d *decoder) time() time.Time {
	sec := int64(d.uint64())
	nsec := int64(d.uint32())
	return time.Unix(sec, nsec)
}

func (d *decoder) field() string {
	n := d.uint32()
	if uint64(n) > uint64(len(d.s)) {
		d.bad = true
		return ""
	}
	return d.next(int(n))
}
