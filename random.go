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
		if !base64URLByte[s[i]] {
			return false
		}
	}
	return true
}

// base64URLByte marks the bytes of the base64url alphabet. It is a lookup
// table, never written: validSecret runs on every authenticated request.
var base64URLByte = [256]bool{
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true, 'J': true, 'K': true, 'L': true, 'M': true,
	'N': true, 'O': true, 'P': true, 'Q': true, 'R': true, 'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true, 'j': true, 'k': true, 'l': true, 'm': true,
	'n': true, 'o': true, 'p': true, 'q': true, 'r': true, 's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true, '-': true, '_': true,
}

// sameHash compares two hashes in constant time.
func sameHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
