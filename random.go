package atauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

// secretLen is the length in bytes of session ids, exchange tokens, states
// and flow nonces: 256 bits.
const secretLen = 32

// encodedSecretLen is the length of a secret in base64url without padding.
var encodedSecretLen = base64.RawURLEncoding.EncodedLen(secretLen)

// newSecret returns a fresh random secret, base64url encoded.
func (m *Manager) newSecret() (string, error) {
	var b [secretLen]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		return "", fmt.Errorf("atauth: reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// hashSecret returns the hex SHA-256 of s: the form in which secrets are
// stored and looked up, so that a leaked store yields no usable credential.
func hashSecret(s string) string {
	// Copying a short secret to the stack avoids the allocation of []byte(s):
	// this runs on every authenticated request.
	var in [2 * secretLen]byte
	var sum [sha256.Size]byte
	if len(s) <= len(in) {
		n := copy(in[:], s)
		sum = sha256.Sum256(in[:n])
	} else {
		sum = sha256.Sum256([]byte(s))
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// validSecret reports whether s has the shape of a secret atauth minted. It
// rejects junk before any store lookup.
func validSecret(s string) bool {
	if len(s) != encodedSecretLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// sameHash compares two hashes in constant time.
func sameHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
