// Package seal encrypts records at rest with AES-256-GCM under a keyring of
// named keys.
//
// The newest key seals; every key in the ring opens. A sealed value names the
// key that sealed it, so adding a new key in front of the old ones rotates
// sealing without making existing values unreadable.
//
// A sealed value is laid out as
//
//	version (1 byte, currently 1)
//	key id length (1 byte) | key id
//	nonce (12 random bytes)
//	ciphertext | GCM tag (16 bytes)
//
// The header (version and key id) is authenticated together with the
// caller's additional data, so neither can be altered without Open failing.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Errors returned by Open. They are distinct so that a caller can tell a
// missing key (a configuration problem: a key was dropped from the ring too
// early) from a value that was damaged or forged.
var (
	// ErrUnknownKey reports that a sealed value names a key that is not in
	// the keyring.
	ErrUnknownKey = errors.New("atauth: seal: unknown key")

	// ErrMalformed reports that a sealed value is too short or its header is
	// not one this package writes.
	ErrMalformed = errors.New("atauth: seal: malformed sealed value")

	// ErrDecrypt reports that a sealed value failed authentication: it was
	// altered, or it was sealed with different additional data.
	ErrDecrypt = errors.New("atauth: seal: decryption failed")
)

const (
	formatVersion = 1
	nonceSize     = 12
	tagSize       = 16
	// SecretSize is the length of a key's secret in bytes (AES-256).
	SecretSize = 32
	// MaxKeyIDLen is the longest key id a Key may have.
	MaxKeyIDLen = 16
)

// Key is a named AES-256 key.
type Key struct {
	// ID names the key inside every value it seals. It is 1 to 16 visible
	// ASCII characters (0x21 to 0x7E) and must be unique in a keyring. It is
	// stored in clear, so it must not be derived from Secret.
	ID string
	// Secret is the 32-byte AES-256 key.
	Secret []byte
}

// Keyring seals with its first key and opens with any of its keys. A Keyring
// is safe for concurrent use once Rand is no longer being changed.
type Keyring struct {
	// Rand is the source of nonces. When nil, crypto/rand is used. Tests set
	// it to make output deterministic; it must not be changed while the
	// Keyring is in use.
	Rand io.Reader

	sealID  string
	sealer  cipher.AEAD
	openers map[string]cipher.AEAD
}

// NewKeyring returns a Keyring that seals with keys[0] and opens with any of
// keys. It rejects an empty list, a secret that is not 32 bytes, an invalid
// key id and duplicate ids. The secrets are not retained after NewKeyring
// returns, so the caller may clear them.
func NewKeyring(keys []Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("atauth: seal: no keys")
	}
	k := &Keyring{openers: make(map[string]cipher.AEAD, len(keys))}
	for i, key := range keys {
		if err := checkKeyID(key.ID); err != nil {
			return nil, fmt.Errorf("atauth: seal: key %d: %w", i, err)
		}
		if len(key.Secret) != SecretSize {
			return nil, fmt.Errorf("atauth: seal: key %q: secret is %d bytes, want %d", key.ID, len(key.Secret), SecretSize)
		}
		if _, dup := k.openers[key.ID]; dup {
			return nil, fmt.Errorf("atauth: seal: duplicate key id %q", key.ID)
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, fmt.Errorf("atauth: seal: key %q: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("atauth: seal: key %q: %w", key.ID, err)
		}
		k.openers[key.ID] = aead
		if i == 0 {
			k.sealID, k.sealer = key.ID, aead
		}
	}
	return k, nil
}

func checkKeyID(id string) error {
	if len(id) == 0 || len(id) > MaxKeyIDLen {
		return fmt.Errorf("key id %q is %d characters, want 1 to %d", id, len(id), MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return fmt.Errorf("key id %q has a character that is not visible ASCII", id)
		}
	}
	return nil
}

// SealingKeyID returns the id of the key that Seal uses.
func (k *Keyring) SealingKeyID() string { return k.sealID }

// Seal encrypts plaintext with the keyring's first key and a fresh random
// nonce. additionalData is authenticated but not stored: Open must be given
// the same bytes. Callers pass something that names the record the value
// belongs to, so that a sealed value copied into another record does not
// open.
func (k *Keyring) Seal(plaintext, additionalData []byte) ([]byte, error) {
	hdrLen := 2 + len(k.sealID)
	out := make([]byte, hdrLen+nonceSize, hdrLen+nonceSize+len(plaintext)+tagSize)
	out[0] = formatVersion
	out[1] = byte(len(k.sealID))
	copy(out[2:], k.sealID)
	nonce := out[hdrLen:]
	if err := k.readNonce(nonce); err != nil {
		return nil, err
	}
	return k.sealer.Seal(out, nonce, plaintext, authData(out[:hdrLen], additionalData)), nil
}

func (k *Keyring) readNonce(nonce []byte) error {
	if k.Rand == nil {
		// crypto/rand.Read never returns an error.
		rand.Read(nonce)
		return nil
	}
	if _, err := io.ReadFull(k.Rand, nonce); err != nil {
		return fmt.Errorf("atauth: seal: reading nonce: %w", err)
	}
	return nil
}

// Open decrypts a value made by Seal, with the key the value names. It
// returns an error wrapping ErrMalformed, ErrUnknownKey or ErrDecrypt.
func (k *Keyring) Open(sealed, additionalData []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != formatVersion {
		return nil, ErrMalformed
	}
	idLen := int(sealed[1])
	hdrLen := 2 + idLen
	if idLen == 0 || idLen > MaxKeyIDLen || len(sealed) < hdrLen+nonceSize+tagSize {
		return nil, ErrMalformed
	}
	aead, ok := k.openers[string(sealed[2:hdrLen])]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, sealed[2:hdrLen])
	}
	nonce := sealed[hdrLen : hdrLen+nonceSize]
	plaintext, err := aead.Open(nil, nonce, sealed[hdrLen+nonceSize:], authData(sealed[:hdrLen], additionalData))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// authData returns the bytes GCM authenticates: the header followed by the
// caller's additional data. The header carries its own length, so the
// concatenation is unambiguous.
func authData(header, additionalData []byte) []byte {
	if len(additionalData) == 0 {
		return header
	}
	ad := make([]byte, 0, len(header)+len(additionalData))
	ad = append(ad, header...)
	return append(ad, additionalData...)
}
