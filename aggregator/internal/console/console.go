// Package console serves the web console: the static files of the Vite
// build in aggregator/web, embedded in the binary when it is built with
// -tags console (make build, make demo and make dist do), so that plain
// `go build` and `go test` need no npm. Without the tag, Handler serves a
// one-line page saying the console was not built.
//
// The handler serves each file from memory with:
//   - the precompressed .br or .gz sibling the build wrote, when the client
//     accepts that encoding (Vary: Accept-Encoding);
//   - a year-long immutable cache for the content-hashed files under
//     assets/, and revalidation (ETag) for everything else;
//   - index.html for any other GET path (the console routes in the
//     browser), but a 404 for a missing file under assets/;
//   - a strict Content-Security-Policy (scripts, styles, images and
//     connections to this origin only; no inline script, no frames, no
//     plugins), X-Content-Type-Options: nosniff, no referrer, and
//     frame-ancestors 'none'.
//
// The console uses only the public API (/api/v1, same origin); it is
// mounted at / beside the API, which keeps /api/, /healthz, /readyz and
// /metrics.
package console

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// ContentSecurityPolicy is sent with every console response. uPlot and
// Preact set styles through the CSSOM (element.style), which a
// style-src without 'unsafe-inline' allows; nothing is inlined in markup.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// NotBuiltPage is what a binary built without the console serves.
const NotBuiltPage = "<!doctype html><meta charset=utf-8><title>vmpulse</title>" +
	"<p>The vmpulse web console was not built into this binary: build it with <code>make build</code> " +
	"(npm in aggregator/web, then <code>go build -tags console</code>). The REST API is at <a href=\"/api/v1/openapi.json\">/api/v1</a>.</p>\n"

// Built reports whether this binary embeds the console.
func Built() bool { return embedded() != nil }

// Handler serves the embedded console, or the not-built page.
func Handler() http.Handler {
	if fsys := embedded(); fsys != nil {
		h, err := New(fsys)
		if err == nil {
			return h
		}
		// A build that embeds a broken dist cannot serve the console:
		// say so rather than fail the aggregator.
		return notBuilt(err.Error())
	}
	return notBuilt("")
}

func notBuilt(detail string) http.Handler {
	page := []byte(NotBuiltPage)
	if detail != "" {
		page = append(page, []byte("<!-- "+strings.ReplaceAll(detail, "--", "- -")+" -->\n")...)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path != "/" {
			w.WriteHeader(http.StatusNotFound)
		}
		if r.Method != http.MethodHead {
			w.Write(page)
		}
	})
}

// file is one servable file and its precompressed forms.
type file struct {
	body, gz, br []byte
	ctype        string
	etag         string
	immutable    bool
}

// Server serves a console build from memory.
type Server struct {
	files map[string]*file // by clean path without the leading slash
	index *file
}

// New loads a Vite build (index.html at its root, hashed files under
// assets/, and .gz/.br siblings written after the build) from fsys.
func New(fsys fs.FS) (*Server, error) {
	s := &Server{files: map[string]*file{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".gz") || strings.HasSuffix(p, ".br") {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &file{body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
			immutable: strings.HasPrefix(p, "assets/")}
		f.ctype = mime.TypeByExtension(path.Ext(p))
		if f.ctype == "" {
			f.ctype = http.DetectContentType(body)
		}
		f.gz, _ = fs.ReadFile(fsys, p+".gz")
		f.br, _ = fs.ReadFile(fsys, p+".br")
		s.files[p] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if s.index = s.files["index.html"]; s.index == nil {
		return nil, fmt.Errorf("console: the build has no index.html")
	}
	return s, nil
}

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	securityHeaders(h)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	f := s.files[p]
	if f == nil || p == "index.html" {
		if strings.HasPrefix(p, "assets/") {
			// A missing hashed file is an old page asking for a
			// previous build: index.html would only confuse it.
			http.Error(w, http.StatusText(http.StatusNotFound), http.StatusNotFound)
			return
		}
		f = s.index
	}
	if f.immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", f.etag)
	h.Set("Content-Type", f.ctype)
	if f.gz != nil || f.br != nil {
		h.Add("Vary", "Accept-Encoding")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatch(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	switch enc := acceptEncoding(r.Header.Get("Accept-Encoding")); {
	case f.br != nil && enc["br"]:
		body = f.br
		h.Set("Content-Encoding", "br")
	case f.gz != nil && enc["gzip"]:
		body = f.gz
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// acceptEncoding reads the codings an Accept-Encoding header accepts (q > 0).
func acceptEncoding(v string) map[string]bool {
	out := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					q = f
				}
			}
		}
		out[name] = q > 0
	}
	return out
}

// etagMatch reports whether an If-None-Match header names etag (or *).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// notFoundSetter is the router the API serves (a chi.Mux): its not-found
// handler answers every path that no route matches.
type notFoundSetter interface {
	NotFound(http.HandlerFunc)
}

// Mount makes console answer every path the API's router does not route,
// so the console is served at / by the API's own server (its middleware:
// request ids, access log, panic recovery; its TLS and timeouts). The
// routes under /api/v1 keep the API's JSON 404, which the router gave its
// /api/v1 subrouter when it was built. Call it before serving.
func Mount(api, console http.Handler) error {
	r, ok := api.(notFoundSetter)
	if !ok {
		return fmt.Errorf("console: the API's handler (%T) has no NotFound to mount the console on", api)
	}
	r.NotFound(console.ServeHTTP)
	return nil
}
