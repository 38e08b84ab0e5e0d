// Package delivery holds what the shipped notifier plugins share for HTTP:
// the client with the channel's TLS options, the POST that reads a bounded
// answer, Retry-After, the mapping of HTTP statuses to results, and the
// per-destination rate limiter that keeps a storm from tripping a chat
// robot's throttle.
package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// TLS is the TLS part of a channel's config.
type TLS struct {
	// CAFile is a PEM bundle trusted instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify turns certificate checks off. For tests only.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// Config builds the tls.Config, reading the files.
func (t TLS) Config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Validate adds the TLS config's problems to verr.
func (t TLS) Validate(verr *sdk.ValidationError) {
	if _, err := t.Config(); err != nil {
		verr.Add("tls", "%v", err)
	}
}

// Client returns an HTTP client for one channel: its TLS options, no
// redirects (a webhook that redirects a POST is misconfigured), and the
// proxy from the environment.
func Client(t TLS) (*http.Client, error) {
	tc, err := t.Config()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// Clients caches one client per distinct TLS config, so that connections
// are reused across calls.
type Clients struct {
	mu sync.Mutex
	m  map[TLS]*http.Client
}

// Get returns the client for t.
func (c *Clients) Get(t TLS) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[t]; ok {
		return cl, nil
	}
	cl, err := Client(t)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[TLS]*http.Client{}
	}
	c.m[t] = cl
	return cl, nil
}

// Response is an HTTP answer with at most 64 KiB of its body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Post sends body to u with the headers and reads the answer.
func Post(ctx context.Context, c *http.Client, u string, header http.Header, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// NetworkResult is the result of a request that got no answer: retry,
// unless the context ended (the host's timeout), which is the caller's
// error to return.
func NetworkResult(ctx context.Context, err error) (sdk.Result, error) {
	if ctx.Err() != nil {
		return sdk.Result{}, ctx.Err()
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var cverr *tls.CertificateVerificationError
	if errors.As(err, &cverr) {
		return sdk.PermanentResult("tls", err.Error()), nil
	}
	return sdk.RetryResult(0, "network", err.Error()), nil
}

// MaxRetryAfter caps what a server may ask for.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads a Retry-After header (seconds or an HTTP date); zero
// when absent or unreadable.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return min(time.Duration(max(s, 0))*time.Second, MaxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter)
	}
	return 0
}

// StatusResult maps an HTTP status to a result: 2xx delivered; 408, 425,
// 429 and 5xx retry (honouring Retry-After); any other status permanent
// (a 3xx because redirects are not followed). The result carries the
// status as its code and the start of the body as its message.
func StatusResult(r *Response, now time.Time) sdk.Result {
	msg := Snippet(r.Body)
	code := strconv.Itoa(r.Status)
	switch {
	case r.Status >= 200 && r.Status < 300:
		return sdk.Result{Outcome: sdk.Delivered, Code: code, Message: msg}
	case r.Status == http.StatusRequestTimeout, r.Status == http.StatusTooEarly,
		r.Status == http.StatusTooManyRequests, r.Status >= 500:
		return sdk.RetryResult(RetryAfter(r.Header, now), code, msg)
	case r.Status >= 300 && r.Status < 400:
		return sdk.PermanentResult(code, "redirect to "+r.Header.Get("Location")+" not followed")
	}
	return sdk.PermanentResult(code, msg)
}

// Snippet is the start of a body for a result's message.
func Snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}

// Rule is one rate limit: at most N messages per Per.
type Rule struct {
	N   int
	Per time.Duration
}

// Limiter keeps each destination (a robot's URL) under its rules with a
// sliding window, and holds a destination back after the service itself
// said it was throttled.
type Limiter struct {
	rules []Rule
	mu    sync.Mutex
	sent  map[string][]time.Time
	until map[string]time.Time
}

// NewLimiter returns a limiter enforcing every rule.
func NewLimiter(rules ...Rule) *Limiter {
	return &Limiter{rules: rules, sent: map[string][]time.Time{}, until: map[string]time.Time{}}
}

// Reserve records a message to key at now when every rule allows it and
// returns 0; otherwise it records nothing and returns how long to wait.
func (l *Limiter) Reserve(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.until[key]; now.Before(u) {
		return u.Sub(now)
	}
	longest := time.Duration(0)
	for _, r := range l.rules {
		longest = max(longest, r.Per)
	}
	sent := l.sent[key]
	for len(sent) > 0 && now.Sub(sent[0]) >= longest {
		sent = sent[1:]
	}
	var wait time.Duration
	for _, r := range l.rules {
		// The messages inside this rule's window are the newest ones.
		in := 0
		for i := len(sent) - 1; i >= 0 && now.Sub(sent[i]) < r.Per; i-- {
			in++
		}
		if in >= r.N {
			oldest := sent[len(sent)-r.N]
			wait = max(wait, oldest.Add(r.Per).Sub(now))
		}
	}
	if wait > 0 {
		l.sent[key] = sent
		return wait
	}
	l.sent[key] = append(sent, now)
	return 0
}

// Block holds key back until t, after the service answered "too fast".
func (l *Limiter) Block(key string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(l.until[key]) {
		l.until[key] = t
	}
}
