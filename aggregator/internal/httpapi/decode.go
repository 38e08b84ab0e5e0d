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
// fields, no trailing data, types checked. Errors are 4xx API errors with
// field details. The decoded body, secrets redacted, becomes the audit
// record's summary.
func decodeJSON(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, CodeTooLarge)
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Err: fmt.Errorf("read body: %w", err)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		e := newError(http.StatusBadRequest, CodeInvalidJSON)
		e.Data = map[string]any{"detail": "empty body"}
		return e
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
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		q.fe.add(name, FieldInvalidFormat, map[string]any{"format": "UTF-8 text without NUL"})
		return ""
	}
	q.fe.maxLen(name, s, max)
	return s
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
