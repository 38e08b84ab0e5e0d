// Package vcload measures the load a vSphere client puts on vCenter: a
// counting HTTP transport (calls, request and response bytes per SOAP
// method or vAPI route) and Reference, a minimal client that collects
// performance counters the way Telegraf's vsphere input does, kept as the
// baseline the agent is compared with in BenchmarkAgentVCenterLoad.
package vcload

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Stat is what a Counter saw for one method.
type Stat struct {
	Calls     int64
	ReqBytes  int64 // HTTP request body bytes
	RespBytes int64 // HTTP response body bytes read by the client
}

// Stats maps a method name (a SOAP method such as "QueryPerf", or
// "REST GET /api/cis/tagging/tag" for vAPI) to its Stat.
type Stats map[string]Stat

// Total sums s over every method for which keep is true (nil keeps all).
func (s Stats) Total(keep func(method string) bool) Stat {
	var t Stat
	for m, st := range s {
		if keep == nil || keep(m) {
			t.Calls += st.Calls
			t.ReqBytes += st.ReqBytes
			t.RespBytes += st.RespBytes
		}
	}
	return t
}

// Sub returns s minus earlier, per method, leaving out methods without
// calls in between.
func (s Stats) Sub(earlier Stats) Stats {
	out := Stats{}
	for m, st := range s {
		e := earlier[m]
		d := Stat{Calls: st.Calls - e.Calls, ReqBytes: st.ReqBytes - e.ReqBytes, RespBytes: st.RespBytes - e.RespBytes}
		if d.Calls != 0 || d.RespBytes != 0 {
			out[m] = d
		}
	}
	return out
}

// Methods returns the method names in s, sorted.
func (s Stats) Methods() []string {
	return slices.Sorted(maps.Keys(s))
}

// Counter counts the calls made through the transports it wraps. It is
// safe for concurrent use; the zero value is ready.
type Counter struct {
	mu sync.Mutex
	m  Stats
}

// Wrap returns rt (http.DefaultTransport when nil) counting into c.
func (c *Counter) Wrap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &countingTransport{c: c, next: rt}
}

// Snapshot returns a copy of the counts so far.
func (c *Counter) Snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

func (c *Counter) add(method string, calls, req, resp int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = Stats{}
	}
	st := c.m[method]
	st.Calls += calls
	st.ReqBytes += req
	st.RespBytes += resp
	c.m[method] = st
}

type countingTransport struct {
	c    *Counter
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper. The request body is read to
// name the method and handed on unchanged.
func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		r2 := req.Clone(req.Context())
		r2.Body = io.NopCloser(bytes.NewReader(b))
		r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		r2.ContentLength = int64(len(b))
		req = r2
	}
	method := MethodOf(req.Method, req.URL.Path, req.URL.RawQuery, body)
	t.c.add(method, 1, int64(len(body)), 0)
	res, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	res.Body = &countingBody{ReadCloser: res.Body, c: t.c, method: method}
	return res, nil
}

type countingBody struct {
	io.ReadCloser
	c      *Counter
	method string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.add(b.method, 0, 0, int64(n))
	}
	return n, err
}

// MethodOf names a call: for a SOAP request (a POST whose body is an
// envelope) the local name of the Body's first element; otherwise
// "REST <verb> <path>", the path cut before any "id:" segment and an
// "action" query parameter appended, so that calls on different objects
// count as one route.
func MethodOf(verb, path, rawQuery string, body []byte) string {
	if m, ok := soapMethod(body); ok {
		return m
	}
	if i := strings.Index(path, "/id:"); i >= 0 {
		path = path[:i] + "/{id}"
	}
	if i := strings.Index(rawQuery, "action="); i >= 0 {
		a := rawQuery[i:]
		if j := strings.IndexByte(a, '&'); j >= 0 {
			a = a[:j]
		}
		path += "?" + a
	}
	return "REST " + verb + " " + path
}

// soapMethod returns the local name of the first child element of the
// first SOAP Body start tag (<Body> or <prefix:Body>) that has one.
func soapMethod(body []byte) (string, bool) {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte("Body"))
		if j < 0 {
			return "", false
		}
		i += j + len("Body")
		if m, ok := bodyChild(body, i); ok {
			return m, true
		}
	}
}

// bodyChild reads the element after a "Body" name ending at i, if that
// name is a start tag's.
func bodyChild(body []byte, i int) (string, bool) {
	at := i - len("Body")
	if at == 0 || (body[at-1] != '<' && body[at-1] != ':') {
		return "", false
	}
	rest := body[i:]
	if len(rest) == 0 || !(rest[0] == '>' || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r') {
		return "", false
	}
	end := bytes.IndexByte(rest, '>')
	if end < 0 || (end > 0 && rest[end-1] == '/') {
		return "", false
	}
	rest = rest[end+1:]
	start := bytes.IndexByte(rest, '<')
	if start < 0 || start+1 >= len(rest) || rest[start+1] == '/' {
		return "", false
	}
	name := rest[start+1:]
	if stop := bytes.IndexAny(name, " \t\r\n/>"); stop >= 0 {
		name = name[:stop]
	}
	if k := bytes.IndexByte(name, ':'); k >= 0 {
		name = name[k+1:]
	}
	if len(name) == 0 {
		return "", false
	}
	return string(name), true
}
