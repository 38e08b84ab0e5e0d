package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters. They are encoded into every
// hash, so raising them later only affects new hashes.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultArgon2 is OWASP's first recommended argon2id configuration:
// 19 MiB of memory, 2 iterations, 1 degree of parallelism.
var DefaultArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Password length bounds. The upper bound keeps hashing cost independent of
// attacker-chosen input size.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// HashPassword returns the PHC-format argon2id hash of password.
func HashPassword(password string) (string, error) {
	return hashWith(DefaultArgon2, password)
}

func hashWith(p Argon2Params, password string) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash means a stored hash cannot be parsed.
var errBadHash = errors.New("auth: malformed password hash")

// VerifyPassword reports whether password matches the PHC-format argon2id
// hash encoded. It compares in constant time.
func VerifyPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var p Argon2Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return false, errBadHash
	}
	// Bound the parameters so a tampered row cannot make verification hang.
	if p.Memory == 0 || p.Memory > 1<<21 || p.Time == 0 || p.Time > 64 || p.Threads == 0 {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 128 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is verified against when a login names no user, so that the
// response time does not reveal whether the user exists.
var dummyHash = func() string {
	h, err := HashPassword("vmpulse-dummy-password-for-timing")
	if err != nil {
		panic(err)
	}
	return h
}()

// Password policy violations, used as field error codes by the API.
const (
	PolicyTooShort         = "password_too_short"
	PolicyTooLong          = "password_too_long"
	PolicyCharClasses      = "password_char_classes"
	PolicyContainsName     = "password_contains_username"
	PolicySameAsCurrent    = "password_same_as_current"
	PolicyControlCharacter = "password_control_character"
)

// PolicyError lists the complexity rules a password breaks.
type PolicyError struct {
	Violations []string
}

func (e *PolicyError) Error() string {
	return "auth: password policy: " + strings.Join(e.Violations, ", ")
}

// CheckPassword enforces the complexity rules: at least MinPasswordLen
// characters (at most MaxPasswordLen), at least three of lower case, upper
// case, digits and other characters, no control characters, and not
// containing the username or the local part of the email.
func CheckPassword(password, username, email string) error {
	var v []string
	n := len([]rune(password))
	if n < MinPasswordLen {
		v = append(v, PolicyTooShort)
	}
	if n > MaxPasswordLen {
		v = append(v, PolicyTooLong)
	}
	var lower, upper, digit, other, ctrl bool
	for _, r := range password {
		switch {
		case unicode.IsControl(r):
			ctrl = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	if classes < 3 {
		v = append(v, PolicyCharClasses)
	}
	if ctrl {
		v = append(v, PolicyControlCharacter)
	}
	lp := strings.ToLower(password)
	local, _, _ := strings.Cut(email, "@")
	for _, name := range []string{username, local} {
		if len(name) >= 3 && strings.Contains(lp, strings.ToLower(name)) {
			v = append(v, PolicyContainsName)
			break
		}
	}
	if len(v) > 0 {
		return &PolicyError{Violations: v}
	}
	return nil
}

// GeneratePassword returns a random password that satisfies CheckPassword
// for any username of at least three characters it could contain by chance
// (it is retried until it does).
func GeneratePassword(username, email string) (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_.!"
	for {
		out := make([]byte, 0, 20)
		buf := make([]byte, 32)
		for len(out) < 20 {
			if _, err := rand.Read(buf); err != nil {
				return "", fmt.Errorf("auth: generate password: %w", err)
			}
			for _, b := range buf {
				// Reject the top of the byte range so every character is
				// equally likely.
				if int(b) < 256-256%len(alphabet) && len(out) < 20 {
					out = append(out, alphabet[int(b)%len(alphabet)])
				}
			}
		}
		pw := string(out)
		if CheckPassword(pw, username, email) == nil {
			return pw, nil
		}
	}
}
