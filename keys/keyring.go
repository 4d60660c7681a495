package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/internal/seal"
)

const (
	// SecretSize is the length in bytes of a sealing key's secret.
	SecretSize = seal.SecretSize
	// MaxKeyIDLen is the longest sealing key id, in bytes.
	MaxKeyIDLen = seal.MaxKeyIDLen
)

// NewSealingKey returns a sealing key named id with a secret of SecretSize
// bytes read from r. A nil r means crypto/rand.Reader.
func NewSealingKey(id string, r io.Reader) (atauth.SealingKey, error) {
	if err := checkSealingKeyID(id); err != nil {
		return atauth.SealingKey{}, invalid("", "%q: %v", id, err)
	}
	if r == nil {
		r = rand.Reader
	}
	secret := make([]byte, SecretSize)
	if _, err := io.ReadFull(r, secret); err != nil {
		return atauth.SealingKey{}, fmt.Errorf("atauth: keys: generating sealing key: %w", err)
	}
	return atauth.SealingKey{ID: id, Secret: secret}, nil
}

// checkSealingKeyID applies the rule atauth.New enforces: 1 to 16 visible
// ASCII characters. Its errors do not quote id: in a malformed keyring line
// the "id" may be a secret.
func checkSealingKeyID(id string) error {
	if len(id) == 0 || len(id) > MaxKeyIDLen {
		return fmt.Errorf("sealing key id is %d characters, want 1 to %d", len(id), MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return errors.New("sealing key id has a character that is not visible ASCII")
		}
	}
	return nil
}

// FormatKeyring encodes ring as ParseKeyring reads it: one ID:SECRET line
// per key, in order, the secret in unpadded base64url. It does not check the
// keys; ParseKeyring does.
func FormatKeyring(ring []atauth.SealingKey) []byte {
	var b bytes.Buffer
	for _, k := range ring {
		b.WriteString(k.ID)
		b.WriteByte(':')
		b.WriteString(base64.RawURLEncoding.EncodeToString(k.Secret))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseKeyring decodes a keyring: ID:SECRET entries separated by newlines
// or other white space, the first of which seals. It requires at least one
// key, valid and unique ids, and secrets of SecretSize bytes, so that its
// result is accepted by atauth.New. Error messages never include a secret.
func ParseKeyring(b []byte) ([]atauth.SealingKey, error) {
	return parseKeyring(b, "")
}

func parseKeyring(b []byte, where string) ([]atauth.SealingKey, error) {
	entries := strings.Fields(string(b))
	if len(entries) == 0 {
		return nil, invalid(where, "keyring has no keys")
	}
	ring := make([]atauth.SealingKey, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		// Base64 has no colon, so the last one ends the id, which may
		// itself contain colons.
		colon := strings.LastIndexByte(e, ':')
		if colon < 0 {
			return nil, invalid(where, "keyring entry %d is not ID:SECRET", i+1)
		}
		id := e[:colon]
		if err := checkSealingKeyID(id); err != nil {
			return nil, invalid(where, "keyring entry %d: %v", i+1, err)
		}
		if seen[id] {
			return nil, invalid(where, "keyring has two keys with id %q", id)
		}
		seen[id] = true
		secret, ok := decodeSecret(e[colon+1:])
		if !ok {
			return nil, invalid(where, "sealing key %q: secret is not %d bytes of base64", id, SecretSize)
		}
		ring = append(ring, atauth.SealingKey{ID: id, Secret: secret})
	}
	return ring, nil
}

// decodeSecret decodes a secret in base64url or standard base64, padded or
// not, and reports whether it is SecretSize bytes.
func decodeSecret(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{
		base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding,
	} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, len(b) == SecretSize
		}
	}
	return nil, false
}

// LoadKeyring reads a keyring from the file at path, as ParseKeyring
// decodes it.
func LoadKeyring(path string) ([]atauth.SealingKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("atauth: keys: %w", err)
	}
	return parseKeyring(b, path)
}
