package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// mailbox is an in-process SMTP server (go-smtp) that requires PLAIN auth
// over TLS and keeps what it receives.
type mailbox struct {
	mu       sync.Mutex
	messages []delivered
	rejectTo map[string]*gosmtp.SMTPError
}

type delivered struct {
	from  string
	to    []string
	data  []byte
	tls   bool
	authd bool
}

type session struct {
	mb   *mailbox
	conn *gosmtp.Conn
	cur  delivered
}

func (mb *mailbox) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{mb: mb, conn: c}, nil
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "vmpulse" || pass != "hunter2" {
			return gosmtp.ErrAuthFailed
		}
		s.cur.authd = true
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if !s.cur.authd {
		return gosmtp.ErrAuthRequired
	}
	s.cur.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.mb.mu.Lock()
	rej := s.mb.rejectTo[to]
	s.mb.mu.Unlock()
	if rej != nil {
		return rej
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, s.cur.tls = s.conn.TLSConnectionState()
	s.mb.mu.Lock()
	s.mb.messages = append(s.mb.messages, delivered{from: s.cur.from, to: s.cur.to, data: b, tls: s.cur.tls, authd: s.cur.authd})
	s.mb.mu.Unlock()
	return nil
}
func (s *session) Reset()        { s.cur = delivered{authd: s.cur.authd} }
func (s *session) Logout() error { return nil }

func (mb *mailbox) last(t *testing.T) delivered {
	t.Helper()
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if len(mb.messages) == 0 {
		t.Fatal("no message received")
	}
	return mb.messages[len(mb.messages)-1]
}

// certificate makes a self-signed certificate for 127.0.0.1 and writes it
// to a PEM file the plugin can trust.
func certificate(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, file
}

// serve starts the server; implicit wraps the listener in TLS (SMTPS),
// else it offers STARTTLS (unless noTLS).
func serve(t *testing.T, mb *mailbox, cert tls.Certificate, implicit, noTLS bool) int {
	t.Helper()
	s := gosmtp.NewServer(mb)
	s.Domain = "mail.test"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	if !noTLS {
		s.TLSConfig = tc
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		l = tls.NewListener(l, tc)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func alertNote(locale string, cfg map[string]any) sdk.Notification {
	raw, _ := json.Marshal(cfg)
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	return sdk.Notification{
		ID: "ntf-7", Channel: "ops-mail", Config: raw, Locale: locale, Attempt: 1,
		Alerts: []sdk.Alert{{
			ID: "a1", Rule: "vm.cpu.high", Severity: sdk.SeverityCritical, State: sdk.StateFiring,
			Entity: sdk.Entity{Kind: "vm", ID: "vm-42", Name: "web-1"}, Site: "sh-dc1",
			Summary: "CPU 97% <web-1>", Value: 97, Threshold: 90, Unit: "%", StartsAt: t0,
			URL: "https://vmpulse.example/alerts/a1",
		}},
	}
}

// parsed is a received message taken apart.
type parsedMail struct {
	header  mail.Header
	subject string
	text    string
	html    string
}

func parseMail(t *testing.T, data []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("not a message: %v\n%s", err, data)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q: %v", m.Header.Get("Content-Type"), err)
	}
	p := parsedMail{header: m.Header, subject: subject}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part)
		switch ct := part.Header.Get("Content-Type"); ct {
		case "text/plain; charset=utf-8":
			p.text = string(b)
		case "text/html; charset=utf-8":
			p.html = string(b)
		default:
			t.Fatalf("unexpected part %q", ct)
		}
	}
	if p.text == "" || p.html == "" {
		t.Fatal("a body is missing")
	}
	return p
}

func TestEmail(t *testing.T) {
	cert, caFile := certificate(t)
	mb := &mailbox{rejectTo: map[string]*gosmtp.SMTPError{
		"nobody@example.com": {Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user"},
		"full@example.com":   {Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"},
	}}
	startTLSPort := serve(t, mb, cert, false, false)
	implicitPort := serve(t, mb, cert, true, false)
	plainPort := serve(t, mb, cert, false, true)

	cfg := func(port int, security string, extra map[string]any) map[string]any {
		c := map[string]any{
			"host": "127.0.0.1", "port": port, "security": security,
			"username": "vmpulse", "password": "hunter2",
			"from": "vmpulse <alerts@example.com>", "to": []string{"ops@example.com", "Oncall <oncall@example.com>"},
			"timezone": "Asia/Shanghai", "tls": map[string]any{"ca_file": caFile},
		}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}

	n, _ := plugintest.RunNotifier(t, ".", host.Config{})
	ctx := context.Background()

	for _, tc := range []struct {
		locale, firing, critical, entityLabel, footer string
	}{
		{"en", "Firing", "Critical", "Entity", "Sent by vmpulse."},
		{"zh-CN", "告警中", "严重", "对象", "由 vmpulse 发送。"},
		{"ja-JP", "発生中", "重大", "対象", "vmpulse から送信されました。"},
	} {
		t.Run("STARTTLS/"+tc.locale, func(t *testing.T) {
			res, err := n.Notify(ctx, alertNote(tc.locale, cfg(startTLSPort, "starttls", nil)))
			if err != nil || res.Outcome != sdk.Delivered {
				t.Fatalf("notify: %+v, %v", res, err)
			}
			d := mb.last(t)
			if !d.tls || !d.authd || d.from != "alerts@example.com" || strings.Join(d.to, ",") != "ops@example.com,oncall@example.com" {
				t.Fatalf("envelope: %+v", d)
			}
			m := parseMail(t, d.data)
			wantSubject := "[" + tc.firing + "] " + tc.critical + ": CPU 97% <web-1>"
			if m.subject != wantSubject {
				t.Errorf("subject = %q, want %q", m.subject, wantSubject)
			}
			for k, want := range map[string]string{
				"From": `"vmpulse" <alerts@example.com>`, "To": `<ops@example.com>, "Oncall" <oncall@example.com>`,
				"Message-Id": "<ntf-7@example.com>", "Mime-Version": "1.0", "Content-Language": tc.locale,
				"X-Vmpulse-Notification": "ntf-7", "Auto-Submitted": "auto-generated",
			} {
				if got := m.header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if _, err := m.header.Date(); err != nil {
				t.Errorf("date: %v", err)
			}
			// Both bodies, in the channel's language and time zone.
			for name, body := range map[string]string{"text": m.text, "html": m.html} {
				for _, want := range []string{tc.firing, tc.critical, tc.entityLabel, tc.footer, "vm web-1 (vm-42)", "90%", "2026-03-01 16:00:00 CST"} {
					if !strings.Contains(body, want) {
						t.Errorf("%s body lacks %q:\n%s", name, want, body)
					}
				}
			}
			if !strings.Contains(m.text, "CPU 97% <web-1>") || !strings.Contains(m.html, "CPU 97% &lt;web-1&gt;") {
				t.Errorf("summary not escaped for HTML only:\n%s\n%s", m.text, m.html)
			}
			if !strings.Contains(m.html, `<a href="https://vmpulse.example/alerts/a1">`) || !strings.Contains(m.html, `lang="`+tc.locale+`"`) {
				t.Errorf("html body:\n%s", m.html)
			}
		})
	}

	t.Run("ImplicitTLS", func(t *testing.T) {
		res, err := n.Notify(ctx, alertNote("en", cfg(implicitPort, "tls", nil)))
		if err != nil || res.Outcome != sdk.Delivered || !mb.last(t).tls {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("Digest", func(t *testing.T) {
		note := alertNote("zh-CN", cfg(startTLSPort, "starttls", map[string]any{"max_alerts": 1}))
		second := note.Alerts[0]
		second.ID, second.State, second.EndsAt = "a2", sdk.StateResolved, second.StartsAt.Add(time.Hour)
		note.Alerts = append(note.Alerts, second)
		note.Digest, note.Omitted = true, 2
		if res, err := n.Notify(ctx, note); err != nil || res.Outcome != sdk.Delivered {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		m := parseMail(t, mb.last(t).data)
		if m.subject != "[vmpulse] 4 条告警: 1 条告警中，1 条已恢复" || !strings.Contains(m.text, "另有 3 条告警未列出。") {
			t.Fatalf("digest subject %q\n%s", m.subject, m.text)
		}
	})

	t.Run("WrongPasswordIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alertNote("en", cfg(startTLSPort, "starttls", map[string]any{"password": "nope"})))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "535" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("RejectedRecipients", func(t *testing.T) {
		res, err := n.Notify(ctx, alertNote("en", cfg(startTLSPort, "starttls", map[string]any{"to": []string{"nobody@example.com"}})))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "550" || !strings.Contains(res.Message, "No such user") {
			t.Fatalf("550: %+v, %v", res, err)
		}
		res, err = n.Notify(ctx, alertNote("en", cfg(startTLSPort, "starttls", map[string]any{"to": []string{"full@example.com"}})))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "452" {
			t.Fatalf("452: %+v, %v", res, err)
		}
		res, err = n.Notify(ctx, alertNote("en", cfg(startTLSPort, "starttls", map[string]any{"to": []string{"nobody@example.com", "ops@example.com"}})))
		if err != nil || res.Outcome != sdk.Delivered || !strings.Contains(res.Message, "nobody@example.com (550") {
			t.Fatalf("partial: %+v, %v", res, err)
		}
	})

	t.Run("NoSTARTTLSOffered", func(t *testing.T) {
		res, err := n.Notify(ctx, alertNote("en", cfg(plainPort, "starttls", nil)))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "starttls" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("UntrustedCertificateIsPermanent", func(t *testing.T) {
		c := cfg(startTLSPort, "starttls", nil)
		delete(c, "tls")
		res, err := n.Notify(ctx, alertNote("en", c))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "tls" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("Validate", func(t *testing.T) {
		err := n.Validate(ctx, json.RawMessage(`{"host":"","security":"ssl","from":"not an address","to":[],"timezone":"Mars/Olympus","password":"x"}`))
		var verr *sdk.ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("validate: %v", err)
		}
		fields := map[string]bool{}
		for _, f := range verr.Fields {
			fields[f.Field] = true
		}
		for _, f := range []string{"host", "security", "from", "to", "timezone", "username"} {
			if !fields[f] {
				t.Errorf("no error for %s in %v", f, verr)
			}
		}
		if err := n.Validate(ctx, mustJSON(cfg(587, "starttls", nil))); err != nil {
			t.Fatalf("valid config refused: %v", err)
		}
	})
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
