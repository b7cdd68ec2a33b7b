package sasl

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/text/secure/precis"
)

// MinIterations is the smallest PBKDF2 iteration count DeriveCredentials accepts (RFC 7677 §4).
// Unknown users are answered with this count too, so store accounts with it (or accept that a
// different count tells real accounts from unknown ones).
const MinIterations = 4096

const saltLen = 16

// ScramKeys are the stored SCRAM credentials for one hash function (RFC 5802 §3).
type ScramKeys struct {
	Salt                 []byte
	Iterations           int
	StoredKey, ServerKey []byte
}

// Credentials are everything stored to authenticate one account. The password itself is never
// stored; PLAIN is verified by re-deriving the SHA-256 StoredKey.
type Credentials struct {
	SHA1, SHA256 ScramKeys
}

// DeriveCredentials prepares password with the PRECIS OpaqueString profile and derives SCRAM
// keys for SHA-1 and SHA-256, each with its own random 16-byte salt.
//
// Clients apply SASLprep (RFC 4013) instead; both agree on ASCII and on almost all other
// passwords, but a password that only NFKC would change may not work with SCRAM.
func DeriveCredentials(password string, iterations int) (Credentials, error) {
	if iterations < MinIterations {
		return Credentials{}, fmt.Errorf("sasl: derive credentials: %d iterations, need at least %d", iterations, MinIterations)
	}
	pw, err := precis.OpaqueString.String(password)
	if err != nil {
		return Credentials{}, fmt.Errorf("sasl: derive credentials: password: %w", err)
	}
	var c Credentials
	if c.SHA1, err = newScramKeys(sha1.New, pw, iterations); err != nil {
		return Credentials{}, fmt.Errorf("sasl: derive credentials: SHA-1: %w", err)
	}
	if c.SHA256, err = newScramKeys(sha256.New, pw, iterations); err != nil {
		return Credentials{}, fmt.Errorf("sasl: derive credentials: SHA-256: %w", err)
	}
	return c, nil
}

func newScramKeys(h func() hash.Hash, pw string, iterations int) (ScramKeys, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails (crypto/rand, Go ≥ 1.24)
	stored, server, err := deriveKeys(h, pw, salt, iterations)
	if err != nil {
		return ScramKeys{}, err
	}
	return ScramKeys{Salt: salt, Iterations: iterations, StoredKey: stored, ServerKey: server}, nil
}

// deriveKeys computes StoredKey and ServerKey from an already prepared password (RFC 5802 §3).
func deriveKeys(h func() hash.Hash, pw string, salt []byte, iterations int) (stored, server []byte, err error) {
	salted, err := pbkdf2.Key(h, pw, salt, iterations, h().Size())
	if err != nil {
		return nil, nil, fmt.Errorf("pbkdf2: %w", err)
	}
	clientKey := hmacSum(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	return sum.Sum(nil), hmacSum(h, salted, "Server Key"), nil
}

func hmacSum(h func() hash.Hash, key []byte, data string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// usable reports whether k looks like keys derived for a hash of the given size, so that
// corrupt or missing records fail cleanly instead of reaching the SCRAM code.
func (k ScramKeys) usable(size int) bool {
	return len(k.Salt) > 0 && k.Iterations > 0 && len(k.StoredKey) == size && len(k.ServerKey) == size
}

// VerifyPlain reports whether password matches: it re-derives the SHA-256 StoredKey (the SHA-1
// one if the account has no SHA-256 keys) and compares in constant time.
func (c Credentials) VerifyPlain(password string) bool {
	ok, _ := c.verifyPlain(password)
	return ok
}

func (c Credentials) verifyPlain(password string) (bool, error) {
	k, h := c.SHA256, sha256.New
	if !k.usable(sha256.Size) {
		k, h = c.SHA1, sha1.New
		if !k.usable(sha1.Size) {
			return false, errors.New("no usable SCRAM keys")
		}
	}
	pw, err := precis.OpaqueString.String(password)
	if err != nil {
		return false, fmt.Errorf("password: %w", err)
	}
	stored, _, err := deriveKeys(h, pw, k.Salt, k.Iterations)
	if err != nil {
		return false, err
	}
	return hmac.Equal(stored, k.StoredKey), nil
}

// dummyKey keys the derivation of fake salts for unknown users. It is random per process and
// written only during package initialisation: without a secret, an attacker could compute the
// fake salt of a name and so tell unknown users from real ones.
var dummyKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

// dummyKeys returns stable fake keys for an unknown username, shaped like real ones.
func dummyKeys(size int, family, username string) ScramKeys {
	m := hmac.New(sha256.New, dummyKey)
	m.Write([]byte(family))
	m.Write([]byte{0})
	m.Write([]byte(username))
	sum := m.Sum(nil) // 32 bytes: salt from the first half, key material from all of it
	key := make([]byte, size)
	copy(key, sum)
	return ScramKeys{
		Salt:       sum[:saltLen],
		Iterations: MinIterations,
		StoredKey:  key,
		ServerKey:  key,
	}
}
