package audit

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Longest stored values of the fields that come straight from request
// headers. Longer values are cut (between characters, never inside one or
// inside an escape).
const (
	MaxUserAgent = 512
	MaxUsername  = 256
	maxSource    = 64
)

// SanitizeText returns s made safe to store in PostgreSQL text columns and
// to show in the logs: each byte that is not part of valid UTF-8 becomes
// the four characters \xNN (so 0xff is stored as `\xff`), and each C0
// control character and DEL becomes \xNN as well (NUL is `\x00`, a newline
// `\x0a`). Everything else, backslashes included, is kept as is, so text
// that is already clean comes back unchanged and SanitizeText is
// idempotent. max > 0 bounds the result in bytes; the cut falls between
// characters or escapes. Nothing is ever rejected: a hostile value is
// recorded in escaped form rather than losing the record it belongs to.
func SanitizeText(s string, max int) string {
	if clean(s) && (max <= 0 || len(s) <= max) {
		return s
	}
	var b strings.Builder
	if max > 0 {
		b.Grow(min(max, len(s)+16))
	} else {
		b.Grow(len(s) + 16)
	}
	put := func(piece string) bool {
		if max > 0 && b.Len()+len(piece) > max {
			return false
		}
		b.WriteString(piece)
		return true
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size <= 1, r < 0x20, r == 0x7f:
			piece = hexEscape(s[i])
			size = 1
		default:
			piece = s[i : i+size]
		}
		if !put(piece) {
			break
		}
		i += size
	}
	return b.String()
}

// clean reports whether s is valid UTF-8 without C0 controls or DEL.
func clean(s string) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		i += size
	}
	return true
}

func hexEscape(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{'\\', 'x', digits[c>>4], digits[c&0xf]})
}

// sanitizeSummary returns a summary PostgreSQL can store and clients can
// parse: valid JSON is kept, with any byte of invalid UTF-8 (which valid
// JSON can carry only inside strings) written as the JSON text `\\xNN`,
// which reads back as \xNN; anything else is kept as the string value of
// {"unparsed": …}, escaped by SanitizeText, so the record still says what
// it was given.
func sanitizeSummary(s []byte) json.RawMessage {
	if len(s) == 0 {
		return json.RawMessage("{}")
	}
	if !json.Valid(s) {
		b, _ := json.Marshal(map[string]string{"unparsed": SanitizeText(string(s), 0)})
		return b
	}
	if utf8.Valid(s) {
		return s
	}
	out := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size <= 1 {
			out = append(out, '\\')
			out = append(out, hexEscape(s[i])...)
			i++
			continue
		}
		out = append(out, s[i:i+size]...)
		i += size
	}
	return out
}
