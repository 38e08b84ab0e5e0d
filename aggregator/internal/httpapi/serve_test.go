package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestServeTLS serves the API over TLS from configured cert/key files and
// shuts down when the context ends.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	e := newEnv(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.api.Serve(ctx, ln) }()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := client.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("https GET: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Errorf("healthz over TLS = %d, tls %v", res.StatusCode, res.TLS != nil)
	}
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		if res.StatusCode == 200 {
			t.Error("plain HTTP answered on the TLS listener")
		}
		res.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the context ended")
	}
}

func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestJunkNeverCausesA500 throws malformed bodies at every mutating route
// as an administrator: each must be refused with a 4xx.
func TestJunkNeverCausesA500(t *testing.T) {
	e := newEnv(t, nil)
	junk := []string{`null`, `[]`, `"text"`, `42`, `{"name":null,"username":null}`, `{"roles":"admin","permissions":{}}`,
		`{"username":"` + strings.Repeat("é", 300) + `","password":1e400}`, `{"sites":[null],"vm_groups":[1]}`, `{"expires_at":"tomorrow"}`,
		`{"refresh_token":"vmr_` + strings.Repeat("A", 40) + `"}`, "\x00\xff", `{"name":"a","parents":["a"]}`}
	for _, rt := range e.api.routes {
		if !rt.mutating() && !rt.Query || rt.Pattern == "/auth/logout" {
			continue
		}
		path := "/api/v1" + strings.ReplaceAll(rt.Pattern, "{id}", uuid.NewString())
		for _, body := range junk {
			res := e.do(rt.Method, path, e.tokens["admin"], body)
			if res.status >= 500 || res.status < 400 {
				t.Errorf("%s %s with %.40q = %d %s", rt.Method, rt.Pattern, body, res.status, res.raw)
			}
		}
	}
}

// TestResponsesCompressed: JSON answers are gzipped for a client that
// accepts it (and decode to the same envelope), sent plain to one that
// does not, and the realtime stream is never compressed.
func TestResponsesCompressed(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	get := func(path, encoding string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+e.tokens["admin"])
		if encoding != "" {
			req.Header.Set("Accept-Encoding", encoding)
		}
		rec := httptest.NewRecorder()
		e.api.Handler().ServeHTTP(rec, req)
		return rec
	}
	plain := get("/api/v1/vms?limit=100", "")
	if plain.Code != 200 || plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("without Accept-Encoding: %d, encoding %q", plain.Code, plain.Header().Get("Content-Encoding"))
	}
	zipped := get("/api/v1/vms?limit=100", "gzip, deflate, br")
	if zipped.Code != 200 || zipped.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(zipped.Header().Get("Vary"), "Accept-Encoding") {
		t.Fatalf("with gzip: %d, encoding %q, vary %q", zipped.Code, zipped.Header().Get("Content-Encoding"), zipped.Header().Get("Vary"))
	}
	zlen := zipped.Body.Len()
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, plain.Body.Bytes()) {
		t.Errorf("gzipped answer decodes to %d bytes, plain is %d", len(body), plain.Body.Len())
	}
	t.Logf("GET /vms: %d bytes plain, %d gzipped", plain.Body.Len(), zlen)
	// Errors are envelopes too, compressed alike; the X-Request-ID and
	// nosniff headers survive.
	if nf := get("/api/v1/vms/nope:vm-404", "gzip"); nf.Code != 404 || nf.Header().Get("Content-Encoding") != "gzip" ||
		nf.Header().Get("X-Content-Type-Options") != "nosniff" || nf.Header().Get("X-Request-ID") == "" {
		t.Errorf("404 with gzip: %d, headers %v", nf.Code, nf.Header())
	}
}
