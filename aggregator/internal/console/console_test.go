package console

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func testBuild(t *testing.T) *Server {
	t.Helper()
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	const js = "console.log('vmpulse')"
	s, err := New(fstest.MapFS{
		"index.html":                {Data: []byte("<!doctype html><div id=app></div>")},
		"favicon.svg":               {Data: []byte("<svg></svg>")},
		"assets/index-abc123.js":    {Data: []byte(js)},
		"assets/index-abc123.js.gz": {Data: gz(js)},
		"assets/index-abc123.js.br": {Data: []byte("brotli bytes")},
		"assets/plain-x1.css":       {Data: []byte("body{}")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(h http.Handler, method, path string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServer(t *testing.T) {
	s := testBuild(t)
	for _, c := range []struct {
		name, method, path string
		headers            []string
		status             int
		body               string // prefix; "" skips
		want               map[string]string
	}{
		{name: "root is index.html", method: "GET", path: "/", status: 200, body: "<!doctype html>",
			want: map[string]string{"Cache-Control": "no-cache", "Content-Type": "text/html; charset=utf-8"}},
		{name: "a console route falls back to index.html", method: "GET", path: "/vms/abc%3Avm-1", status: 200, body: "<!doctype html>"},
		{name: "index.html by name", method: "GET", path: "/index.html", status: 200, body: "<!doctype html>"},
		{name: "hashed asset, long cache", method: "GET", path: "/assets/index-abc123.js", status: 200, body: "console.log",
			want: map[string]string{"Cache-Control": "public, max-age=31536000, immutable", "Content-Encoding": "", "Vary": "Accept-Encoding"}},
		{name: "brotli preferred", method: "GET", path: "/assets/index-abc123.js", headers: []string{"Accept-Encoding", "gzip, deflate, br"},
			status: 200, body: "brotli bytes", want: map[string]string{"Content-Encoding": "br", "Content-Length": "12"}},
		{name: "gzip when br is refused", method: "GET", path: "/assets/index-abc123.js", headers: []string{"Accept-Encoding", "gzip, br;q=0"},
			status: 200, want: map[string]string{"Content-Encoding": "gzip"}},
		{name: "no precompressed form", method: "GET", path: "/assets/plain-x1.css", headers: []string{"Accept-Encoding", "gzip, br"},
			status: 200, body: "body{}", want: map[string]string{"Content-Encoding": "", "Vary": ""}},
		{name: "missing asset is 404, not index.html", method: "GET", path: "/assets/old-zzz.js", status: 404},
		{name: "the .gz files are not paths", method: "GET", path: "/assets/index-abc123.js.gz", status: 404},
		{name: "dot-dot stays inside", method: "GET", path: "/../../etc/passwd", status: 200, body: "<!doctype html>"},
		{name: "HEAD has no body", method: "HEAD", path: "/favicon.svg", status: 200, body: "",
			want: map[string]string{"Content-Type": "image/svg+xml"}},
		{name: "POST refused", method: "POST", path: "/", status: 405, want: map[string]string{"Allow": "GET, HEAD"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(s, c.method, c.path, c.headers...)
			if rec.Code != c.status {
				t.Fatalf("%s %s = %d, want %d", c.method, c.path, rec.Code, c.status)
			}
			if c.body != "" && !strings.HasPrefix(rec.Body.String(), c.body) {
				t.Errorf("body %q, want prefix %q", rec.Body.String(), c.body)
			}
			if c.method == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD body %q", rec.Body.String())
			}
			for k, v := range c.want {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			// Every answer, errors included, carries the security headers.
			if rec.Header().Get("Content-Security-Policy") != ContentSecurityPolicy || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("security headers missing: %v", rec.Header())
			}
		})
	}
}

func TestGzipBodyIsTheFile(t *testing.T) {
	rec := get(testBuild(t), "GET", "/assets/index-abc123.js", "Accept-Encoding", "gzip")
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	if string(b) != "console.log('vmpulse')" {
		t.Errorf("gunzipped %q", b)
	}
}

func TestETag(t *testing.T) {
	s := testBuild(t)
	first := get(s, "GET", "/")
	etag := first.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if rec := get(s, "GET", "/vms", "If-None-Match", etag); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("revalidation = %d %q", rec.Code, rec.Body.String())
	}
	if rec := get(s, "GET", "/", "If-None-Match", `"other"`); rec.Code != 200 {
		t.Errorf("stale ETag = %d", rec.Code)
	}
}

func TestNewNeedsIndex(t *testing.T) {
	if _, err := New(fstest.MapFS{"assets/a.js": {Data: []byte("x")}}); err == nil {
		t.Error("a build without index.html was accepted")
	}
}

func TestNotBuilt(t *testing.T) {
	h := notBuilt("")
	rec := get(h, "GET", "/")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "console was not built") {
		t.Errorf("/ = %d %q", rec.Code, rec.Body.String())
	}
	if rec := get(h, "GET", "/vms?x=<script>"); rec.Code != 404 || strings.Contains(rec.Body.String(), "<script>") {
		t.Errorf("/vms = %d %q", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("Content-Security-Policy") == "" {
		t.Error("no CSP on the not-built page")
	}
}

func TestHandler(t *testing.T) {
	rec := get(Handler(), "GET", "/")
	if Built() {
		if !strings.Contains(rec.Body.String(), `<div id="app">`) {
			t.Errorf("embedded console: / = %q", rec.Body.String())
		}
		return
	}
	if !strings.Contains(rec.Body.String(), "not built") {
		t.Errorf("console not embedded, but / = %q", rec.Body.String())
	}
}
