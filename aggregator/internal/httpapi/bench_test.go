package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// perOp is the mean time per iteration of the benchmark's final run, in
// microseconds.
func perOp(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) / 1e3 }

// BenchmarkAuthOverhead measures what the API adds to a request that needs
// a permission — request state, access log, recovery, CORS, body limit,
// timeout, bearer parsing, JWT verification, the session and effective
// permissions lookup in PostgreSQL, the permission check — against a bare
// chi handler writing the same envelope, and prints the difference.
func BenchmarkAuthOverhead(b *testing.B) {
	e := newEnv(b, nil)
	e.logs.t = discardTB{b} // the access log is still formatted, not forwarded
	token := e.tokens["viewer"]
	bare := chi.NewRouter()
	bare.Get("/api/v1/auth/check", func(w http.ResponseWriter, r *http.Request) {
		writeData(w, r, http.StatusOK, map[string]any{"permission": "vm:read", "allowed": true})
	})
	run := func(h http.Handler, auth bool, out *float64) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", "/api/v1/auth/check?permission=vm:read", nil)
				if auth {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			*out = perOp(b)
		}
	}
	var base, full float64
	b.Run("bare", run(bare, false, &base))
	b.Run("authenticated", run(e.api.Handler(), true, &full))
	fmt.Printf("bare chi handler %.1f us/op, authenticated API request %.1f us/op\n", base, full)
	fmt.Printf("figure: api_auth_overhead_us %.1f us\n", full-base)
}

// BenchmarkLogin measures login throughput through the HTTP handler (JSON
// decoding, argon2id verification, session and refresh-token inserts, token
// signing, login log, audit record) with GOMAXPROCS concurrent logins, and
// prints logins per second.
func BenchmarkLogin(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Auth.LoginRate, c.Auth.LoginBurst = 1e6, 1e6 })
	e.logs.t = discardTB{b}
	body := `{"username":"viewer","password":"` + goodPassword + `"}`
	var us float64
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := httptest.NewRequest("POST", "/api/v1/auth/login", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				e.api.Handler().ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Errorf("login: %d %s", rec.Code, rec.Body)
					return
				}
			}
		})
		us = perOp(b)
	})
	fmt.Printf("figure: login_per_s %.1f logins/s\n", 1e6/us)
}

// discardTB stops the log sink from forwarding lines during benchmarks.
type discardTB struct{ testing.TB }

func (discardTB) Log(...any) {}
