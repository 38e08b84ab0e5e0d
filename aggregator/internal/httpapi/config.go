package httpapi

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// Config configures the REST API. Zero values take the defaults of Defaults
// (see WithDefaults).
type Config struct {
	// Listen is the API listener's address, e.g. ":8443".
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile enable HTTPS. Without them the API speaks
	// plain HTTP, which is only allowed on a loopback address unless
	// AllowPlainHTTP is set (for use behind a TLS-terminating proxy).
	TLSCertFile    string `yaml:"tls_cert_file"`
	TLSKeyFile     string `yaml:"tls_key_file"`
	AllowPlainHTTP bool   `yaml:"allow_plain_http"`
	// Auth is the authentication policy (token lifetimes, lockout, login
	// rate limit).
	Auth auth.Config `yaml:"auth"`
	// CORSOrigins are the browser origins allowed to call the API
	// ("https://ops.example.com"); "*" allows any. Empty: no CORS headers.
	CORSOrigins []string `yaml:"cors_origins"`
	// TrustedProxies are the addresses or CIDR prefixes of reverse proxies
	// whose X-Forwarded-For header is believed. Empty: the TCP peer is the
	// client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// BodyLimit caps a request body in bytes.
	BodyLimit int64 `yaml:"body_limit"`
	// RequestTimeout bounds a request's handling; ExportTimeout bounds a
	// streamed CSV export.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	ExportTimeout  time.Duration `yaml:"export_timeout"`
	// AuditQueue bounds the audit records waiting to be written.
	AuditQueue int `yaml:"audit_queue"`
	// Metrics configures GET /metrics (Prometheus).
	Metrics MetricsConfig `yaml:"metrics"`
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Listen:         "127.0.0.1:8080",
		Auth:           auth.Defaults(),
		BodyLimit:      1 << 20,
		RequestTimeout: 30 * time.Second,
		ExportTimeout:  10 * time.Minute,
		AuditQueue:     4096,
		Metrics:        MetricsDefaults(),
	}
}

// WithDefaults fills zero fields from Defaults.
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	c.Auth = c.Auth.WithDefaults()
	if c.BodyLimit == 0 {
		c.BodyLimit = d.BodyLimit
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.ExportTimeout == 0 {
		c.ExportTimeout = d.ExportTimeout
	}
	if c.AuditQueue == 0 {
		c.AuditQueue = d.AuditQueue
	}
	c.Metrics = c.Metrics.WithDefaults()
	return c
}

// Validate reports every invalid field; each error names the field as it
// is spelled in the YAML configuration.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		bad("listen", "%v", err)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("tls_cert_file", "tls_cert_file and tls_key_file must be set together")
	}
	if err == nil && c.TLSCertFile == "" && !c.AllowPlainHTTP && !isLoopback(host) {
		bad("tls_cert_file", "plain HTTP on a non-loopback address %q needs allow_plain_http: true", c.Listen)
	}
	if err := c.Auth.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("auth.%w", e))
		}
	}
	for i, o := range c.CORSOrigins {
		if o != "*" && !(strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://")) {
			bad(fmt.Sprintf("cors_origins[%d]", i), "must be \"*\" or an http(s) origin, got %q", o)
		}
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		bad("trusted_proxies", "%v", err)
	}
	if c.BodyLimit < 1024 {
		bad("body_limit", "must be at least 1024 bytes, got %d", c.BodyLimit)
	}
	if c.RequestTimeout <= 0 {
		bad("request_timeout", "must be positive, got %s", c.RequestTimeout)
	}
	if c.ExportTimeout < c.RequestTimeout {
		bad("export_timeout", "must be at least request_timeout, got %s", c.ExportTimeout)
	}
	if c.AuditQueue < 1 {
		bad("audit_queue", "must be at least 1, got %d", c.AuditQueue)
	}
	if err := c.Metrics.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("metrics.%w", e))
		}
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// parsePrefixes parses addresses and CIDR prefixes.
func parsePrefixes(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
