package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// validator is implemented by request bodies that check themselves after
// decoding.
type validator interface {
	validate(v *fieldErrors)
}

// fieldErrors collects validation failures.
type fieldErrors struct{ list []FieldError }

func (v *fieldErrors) add(field, code string, params map[string]any) {
	v.list = append(v.list, FieldError{Field: field, Code: code, Params: params})
}

func (v *fieldErrors) err() error {
	if len(v.list) == 0 {
		return nil
	}
	return validationError(v.list...)
}

// required checks presence (non-nil pointer / non-empty string).
func (v *fieldErrors) required(field string, present bool) bool {
	if !present {
		v.add(field, FieldRequired, nil)
	}
	return present
}

func (v *fieldErrors) maxLen(field, s string, max int) {
	if utf8.RuneCountInString(s) > max {
		v.add(field, FieldTooLong, map[string]any{"max": max})
	}
}

var (
	usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$`)
	emailRE    = regexp.MustCompile(`^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$`)
	roleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// siteNameRE is the rule for site names: the CLI's, and the sites
	// table's CHECK constraint.
	siteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

func (v *fieldErrors) pattern(field, s string, re *regexp.Regexp, format string) {
	if !re.MatchString(s) {
		v.add(field, FieldInvalidFormat, map[string]any{"format": format})
	}
}

// decodeJSON reads the body strictly into dst: JSON only, no unknown
// fields, no trailing data, types checked, and every string (member names
// included) text PostgreSQL can store (see textErrors). Errors are 4xx API
// errors with field details. The decoded body, secrets redacted, becomes
// the audit record's summary.
func decodeJSON(r *http.Request, dst any) error {
	body, err := readJSON(r)
	if err != nil {
		return err
	}
	return decodeJSONBody(r, body, dst)
}

// readJSON reads a JSON request body: the content type checked, the size
// bounded by the bodyLimit middleware.
func readJSON(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newError(http.StatusRequestEntityTooLarge, CodeTooLarge)
		}
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Err: fmt.Errorf("read body: %w", err)}
	}
	return body, nil
}

// decodeJSONBody is decodeJSON on a body readJSON returned.
func decodeJSONBody(r *http.Request, body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		e := newError(http.StatusBadRequest, CodeInvalidJSON)
		e.Data = map[string]any{"detail": "empty body"}
		return e
	}
	// encoding/json would turn invalid UTF-8 and lone surrogates into
	// U+FFFD without a word, and keeps NUL, which PostgreSQL refuses in
	// text: refuse them here, once, for every body.
	if fields := textErrors(body); len(fields) > 0 {
		return validationError(fields...)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		e := newError(http.StatusBadRequest, CodeInvalidJSON)
		e.Data = map[string]any{"detail": "trailing data after the JSON value"}
		return e
	}
	var generic any
	if json.Unmarshal(body, &generic) == nil {
		addAuditSummary(r, "request", audit.Redact(generic))
	}
	if v, ok := dst.(validator); ok {
		var fe fieldErrors
		v.validate(&fe)
		return fe.err()
	}
	return nil
}

// Reasons a JSON string is refused (the invalid_text field error's
// "reason" parameter).
const (
	textNUL           = "nul"
	textInvalidUTF8   = "invalid_utf8"
	textLoneSurrogate = "lone_surrogate"
)

// maxTextErrors bounds the field errors one body can produce.
const maxTextErrors = 20

// textErrors reports every string of the JSON document body (member names
// and values, at any depth) that is not text PostgreSQL can store or that
// encoding/json would silently alter: a NUL (raw or \u0000), bytes that are
// not UTF-8, or an escaped surrogate without its pair. Each error names the
// string's JSON path ("display_name", "roles[2]", "scope.sites[0]"; "$" for
// the document itself). A body that is not well-formed JSON yields none:
// the decoder reports that.
func textErrors(body []byte) []FieldError {
	s := &jsonTextScanner{data: body}
	if !s.value("") {
		return nil
	}
	return s.errs
}

// jsonStringMember returns the value of the top-level member name of a JSON
// object body when it is a string, as the client sent it: escapes decoded,
// invalid bytes kept, an unpaired surrogate kept as its escape. It is for
// logging what a refused request carried; the result needs
// audit.SanitizeText before it is stored.
func jsonStringMember(body []byte, name string) (string, bool) {
	s := &jsonTextScanner{data: body, want: name}
	s.value("")
	return string(s.got), s.found
}

// jsonTextScanner walks a JSON document checking its strings. It accepts
// a superset of JSON (numbers are not checked); the decoder does the rest.
type jsonTextScanner struct {
	data  []byte
	pos   int
	depth int
	errs  []FieldError
	// want names a top-level member whose string value is kept in got.
	want  string
	got   []byte
	found bool
}

// maxJSONDepth matches encoding/json's nesting limit.
const maxJSONDepth = 10000

func (s *jsonTextScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value scans one value at path; false means the text is not JSON.
func (s *jsonTextScanner) value(path string) bool {
	s.ws()
	if s.pos >= len(s.data) {
		return false
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(path)
	case c == '[':
		return s.array(path)
	case c == '"':
		_, reason, ok := s.str(false)
		if reason != "" {
			s.report(textPath(path), reason)
		}
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		start := s.pos
		for s.pos < len(s.data) && strings.IndexByte("+-.0123456789eE", s.data[s.pos]) >= 0 {
			s.pos++
		}
		return s.pos > start
	}
	return false
}

func textPath(path string) string {
	if path == "" {
		return "$"
	}
	return path
}

func (s *jsonTextScanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return false
	}
	s.pos += len(lit)
	return true
}

func (s *jsonTextScanner) object(path string) bool {
	if s.depth++; s.depth > maxJSONDepth {
		return false
	}
	defer func() { s.depth-- }()
	s.pos++ // {
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return true
	}
	for {
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return false
		}
		key, reason, ok := s.str(true)
		if !ok {
			return false
		}
		member := audit.SanitizeText(string(key), 128)
		if path != "" {
			member = path + "." + member
		}
		if reason != "" {
			s.report(member, reason) // a refused member name, at its member's path
		}
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return false
		}
		s.pos++
		s.ws()
		if path == "" && s.want != "" && string(key) == s.want && s.pos < len(s.data) && s.data[s.pos] == '"' {
			s.got, reason, ok = s.str(true)
			s.found = ok
			if reason != "" {
				s.report(member, reason)
			}
		} else {
			ok = s.value(member)
		}
		if !ok {
			return false
		}
		s.ws()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return true
		default:
			return false
		}
	}
}

func (s *jsonTextScanner) array(path string) bool {
	if s.depth++; s.depth > maxJSONDepth {
		return false
	}
	defer func() { s.depth-- }()
	s.pos++ // [
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return true
	}
	for i := 0; ; i++ {
		if !s.value(path + "[" + strconv.Itoa(i) + "]") {
			return false
		}
		s.ws()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return true
		default:
			return false
		}
	}
}

func (s *jsonTextScanner) report(path, reason string) {
	if len(s.errs) < maxTextErrors {
		s.errs = append(s.errs, FieldError{Field: path, Code: FieldInvalidText, Params: map[string]any{"reason": reason}})
	}
}

// str scans the string at s.pos (its opening quote) and returns why it is
// refused ("" if it is not), and with keep its decoded bytes (invalid bytes
// kept, an unpaired surrogate as its escape text). ok is false when the
// string is not JSON.
func (s *jsonTextScanner) str(keep bool) (out []byte, reason string, ok bool) {
	s.pos++ // "
	bad := func(r string) {
		if reason == "" {
			reason = r
		}
	}
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return out, reason, true
		case c == '\\':
			if s.pos+1 >= len(s.data) {
				return nil, "", false
			}
			if e := s.data[s.pos+1]; e != 'u' {
				dec, ok := jsonEscapes[e]
				if !ok {
					return nil, "", false
				}
				if keep {
					out = append(out, dec)
				}
				s.pos += 2
				continue
			}
			r, ok := s.hex4(s.pos + 2)
			if !ok {
				return nil, "", false
			}
			esc := s.data[s.pos : s.pos+6]
			s.pos += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if r < 0xdc00 && s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					r2, ok = s.hex4(s.pos + 2)
				}
				if !ok || r2 < 0xdc00 || r2 > 0xdfff {
					bad(textLoneSurrogate)
					if keep {
						out = append(out, esc...)
					}
					continue
				}
				r = utf16.DecodeRune(r, r2)
				s.pos += 6
			}
			if r == 0 {
				bad(textNUL)
			}
			if keep {
				out = utf8.AppendRune(out, r)
			}
		case c == 0:
			bad(textNUL)
			if keep {
				out = append(out, c)
			}
			s.pos++
		case c < 0x20:
			return nil, "", false // a raw control character: not JSON
		case c < utf8.RuneSelf:
			if keep {
				out = append(out, c)
			}
			s.pos++
		default:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size == 1 {
				bad(textInvalidUTF8)
			}
			if keep {
				out = append(out, s.data[s.pos:s.pos+size]...)
			}
			s.pos += size
		}
	}
	return nil, "", false
}

// hex4 reads the four hex digits of a \\u escape at i.
func (s *jsonTextScanner) hex4(i int) (rune, bool) {
	if i+4 > len(s.data) {
		return 0, false
	}
	var r rune
	for _, c := range s.data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

var jsonEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func jsonError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		e := newError(http.StatusBadRequest, CodeInvalidJSON)
		e.Data = map[string]any{"offset": syntax.Offset}
		return e
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(http.StatusBadRequest, CodeInvalidJSON)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "$"
		}
		return validationError(FieldError{Field: field, Code: FieldInvalidType, Params: map[string]any{"expected": jsonType(typ.Type.String())}})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return validationError(FieldError{Field: name, Code: FieldUnknown})
	}
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Err: err}
}

// jsonType names a Go type the way a JSON client thinks of it.
func jsonType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "struct"), strings.Contains(goType, "."):
		if strings.Contains(goType, "Time") {
			return "string"
		}
		return "object"
	case goType == "string" || goType == "*string":
		return "string"
	case goType == "bool" || goType == "*bool":
		return "boolean"
	}
	return "number"
}

// pathID parses the {id} URL parameter as a UUID; a malformed id is the
// resource's 404.
func pathID(r *http.Request, notFoundCode string) (uuid.UUID, error) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		return uuid.Nil, newError(http.StatusNotFound, notFoundCode)
	}
	return id, nil
}

// query reads and validates query parameters, collecting field errors.
type query struct {
	r  *http.Request
	fe fieldErrors
}

func newQuery(r *http.Request) *query { return &query{r: r} }

// str reads a text parameter of at most max characters. Text PostgreSQL
// cannot store (invalid UTF-8, NUL) is refused here rather than failing
// in the database.
func (q *query) str(name string, max int) string {
	s := q.r.URL.Query().Get(name)
	if reason := queryTextProblem(s); reason != "" {
		q.fe.add(name, FieldInvalidText, map[string]any{"reason": reason})
		return ""
	}
	q.fe.maxLen(name, s, max)
	return s
}

// queryTextProblem says why a query value is not storable text, or "".
func queryTextProblem(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return textNUL
	case !utf8.ValidString(s):
		return textInvalidUTF8
	}
	return ""
}

func (q *query) intRange(name string, def, min, max int) int {
	s := q.r.URL.Query().Get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		q.fe.add(name, FieldInvalidType, map[string]any{"expected": "integer"})
		return def
	}
	if n < min || n > max {
		q.fe.add(name, FieldOutOfRange, map[string]any{"min": min, "max": max})
		return def
	}
	return n
}

func (q *query) cursor(name string) int64 {
	s := q.r.URL.Query().Get(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		q.fe.add(name, FieldInvalidFormat, map[string]any{"format": "positive integer"})
		return 0
	}
	return n
}

func (q *query) time(name string) time.Time {
	s := q.r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.fe.add(name, FieldInvalidFormat, map[string]any{"format": "RFC 3339"})
	}
	return t
}

func (q *query) oneOf(name string, allowed ...string) string {
	s := q.r.URL.Query().Get(name)
	if s == "" {
		return ""
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	q.fe.add(name, FieldInvalidValue, map[string]any{"allowed": strings.Join(allowed, ", ")})
	return ""
}

func (q *query) boolean(name string) *bool {
	s := q.r.URL.Query().Get(name)
	if s == "" {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		q.fe.add(name, FieldInvalidType, map[string]any{"expected": "boolean"})
		return nil
	}
	return &b
}

// sort parses sort=field,-field against the allowed fields.
func (q *query) sort(allowed map[string]string) []auth.SortKey {
	s := q.r.URL.Query().Get("sort")
	if s == "" {
		return nil
	}
	var keys []auth.SortKey
	for _, f := range strings.Split(s, ",") {
		desc := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		if _, ok := allowed[f]; !ok {
			names := make([]string, 0, len(allowed))
			for k := range allowed {
				names = append(names, k)
			}
			slices.Sort(names)
			q.fe.add("sort", FieldInvalidValue, map[string]any{"allowed": strings.Join(names, ", ")})
			return nil
		}
		keys = append(keys, auth.SortKey{Field: f, Desc: desc})
	}
	return keys
}

// page reads page and page_size (max 500).
func (q *query) page() (page, size int) {
	return q.intRange("page", 1, 1, 1_000_000), q.intRange("page_size", 50, 1, 500)
}

func (q *query) err() error { return q.fe.err() }

// pageOf is a page-numbered list response.
type pageOf[T any] struct {
	Items    []T `json:"items"`
	Total    int `json:"total"`
	Page     int `json:"page"`
	PageSize int `json:"page_size"`
}

// cursorOf is a cursor-paginated list response; NextCursor is empty at the
// end.
type cursorOf[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func cursorString(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

func itoa(i int) string { return strconv.Itoa(i) }
