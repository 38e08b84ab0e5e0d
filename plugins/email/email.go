package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/vmpulse/vmpulse/plugins/internal/delivery"
	"github.com/vmpulse/vmpulse/plugins/internal/render"
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Security modes of the SMTP connection.
const (
	SecurityStartTLS = "starttls" // plain connect, then STARTTLS (required); port 587
	SecurityTLS      = "tls"      // TLS from the first byte ("SMTPS"); port 465
	SecurityNone     = "none"     // no TLS: a relay on localhost only; port 25
)

// config is an email channel's config.
type config struct {
	Host          string       `json:"host"`
	Port          int          `json:"port,omitempty"`
	Security      string       `json:"security,omitempty"`
	Username      string       `json:"username,omitempty"`
	Password      string       `json:"password,omitempty"`
	From          string       `json:"from"`
	To            []string     `json:"to"`
	Cc            []string     `json:"cc,omitempty"`
	SubjectPrefix string       `json:"subject_prefix,omitempty"`
	Timezone      string       `json:"timezone,omitempty"`
	Timeout       string       `json:"timeout,omitempty"`
	HELO          string       `json:"helo,omitempty"`
	TLS           delivery.TLS `json:"tls"`
	MaxAlerts     int          `json:"max_alerts,omitempty"`
}

// parsed is a config checked and with its defaults.
type parsed struct {
	config
	from    *mail.Address
	to, cc  []*mail.Address
	loc     *time.Location
	timeout time.Duration
}

//go:embed templates
var templates embed.FS

type email struct {
	hostname string
}

func newEmail() *email {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return &email{hostname: h}
}

func parse(raw json.RawMessage) (*parsed, error) {
	var p parsed
	if err := sdk.DecodeConfig(raw, &p.config); err != nil {
		return nil, err
	}
	verr := &sdk.ValidationError{}
	if p.Host == "" {
		verr.Add("host", "required")
	}
	if p.Security == "" {
		p.Security = SecurityStartTLS
	}
	switch p.Security {
	case SecurityStartTLS:
		p.Port = cmpOr(p.Port, 587)
	case SecurityTLS:
		p.Port = cmpOr(p.Port, 465)
	case SecurityNone:
		p.Port = cmpOr(p.Port, 25)
		if p.Username != "" && !isLocal(p.Host) {
			verr.Add("security", "authentication needs TLS (starttls or tls) unless the server is on localhost")
		}
	default:
		verr.Add("security", "want starttls, tls or none")
	}
	if p.Port < 1 || p.Port > 65535 {
		verr.Add("port", "want 1 to 65535")
	}
	if p.Password != "" && p.Username == "" {
		verr.Add("username", "required with a password")
	}
	var err error
	if p.from, err = mail.ParseAddress(p.From); err != nil {
		verr.Add("from", "not an address: %v", err)
	}
	if len(p.To) == 0 {
		verr.Add("to", "at least one recipient")
	}
	for i, s := range p.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			verr.Add(fmt.Sprintf("to.%d", i), "not an address: %v", err)
			continue
		}
		p.to = append(p.to, a)
	}
	for i, s := range p.Cc {
		a, err := mail.ParseAddress(s)
		if err != nil {
			verr.Add(fmt.Sprintf("cc.%d", i), "not an address: %v", err)
			continue
		}
		p.cc = append(p.cc, a)
	}
	if p.loc, err = render.Location(p.Timezone); err != nil {
		verr.Add("timezone", "unknown time zone %q", p.Timezone)
	}
	p.timeout = 30 * time.Second
	if p.Timeout != "" {
		if p.timeout, err = time.ParseDuration(p.Timeout); err != nil || p.timeout <= 0 {
			verr.Add("timeout", "want a positive duration such as 30s")
		}
	}
	if p.MaxAlerts < 0 {
		verr.Add("max_alerts", "must not be negative")
	}
	p.MaxAlerts = cmpOr(p.MaxAlerts, 50)
	p.TLS.Validate(verr)
	return &p, verr.Err()
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func isLocal(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (e *email) Validate(_ context.Context, raw json.RawMessage) error {
	_, err := parse(raw)
	return err
}

func (e *email) Notify(ctx context.Context, n sdk.Notification) (sdk.Result, error) {
	p, err := parse(n.Config)
	if err != nil {
		return sdk.Result{}, err
	}
	msg, err := e.message(p, n, time.Now())
	if err != nil {
		return sdk.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return e.send(ctx, p, msg)
}

// view is what the templates see.
type view struct {
	Subject    string
	Lang       string
	Alerts     []sdk.Alert
	More       int
	ConsoleURL string
}

func funcs(l render.Locale, loc *time.Location) map[string]any {
	return map[string]any{
		"t":        l.T,
		"state":    l.StateLabel,
		"severity": l.SeverityLabel,
		"entity":   render.Entity,
		"value":    render.Value,
		"time":     func(t time.Time) string { return render.Time(t, loc) },
		"colour": func(a sdk.Alert) string {
			switch {
			case a.State == sdk.StateResolved:
				return "#1a7f37"
			case a.Severity == sdk.SeverityCritical:
				return "#cf222e"
			case a.Severity == sdk.SeverityInfo:
				return "#0969da"
			}
			return "#bf8700"
		},
	}
}

// Bodies renders the plain-text and HTML bodies and the subject of n.
func Bodies(p *parsed, n sdk.Notification) (subject, text, html string, err error) {
	l := render.Lookup(n.Locale)
	subject = render.Subject(l, n)
	if p.SubjectPrefix != "" {
		subject = p.SubjectPrefix + " " + subject
	}
	v := view{Subject: subject, Lang: l.Tag, Alerts: n.Alerts, More: n.Omitted, ConsoleURL: n.ConsoleURL}
	if len(v.Alerts) > p.MaxAlerts {
		v.More += len(v.Alerts) - p.MaxAlerts
		v.Alerts = v.Alerts[:p.MaxAlerts]
	}
	fm := funcs(l, p.loc)
	tt, err := texttemplate.New("message.txt.tmpl").Funcs(fm).ParseFS(templates, "templates/message.txt.tmpl")
	if err != nil {
		return "", "", "", fmt.Errorf("email: text template: %w", err)
	}
	ht, err := htmltemplate.New("message.html.tmpl").Funcs(fm).ParseFS(templates, "templates/message.html.tmpl")
	if err != nil {
		return "", "", "", fmt.Errorf("email: html template: %w", err)
	}
	var tb, hb bytes.Buffer
	if err := tt.Execute(&tb, v); err != nil {
		return "", "", "", fmt.Errorf("email: text body: %w", err)
	}
	if err := ht.Execute(&hb, v); err != nil {
		return "", "", "", fmt.Errorf("email: html body: %w", err)
	}
	return subject, tb.String(), hb.String(), nil
}

func addressList(as []*mail.Address) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// message is the whole RFC 5322 message.
func (e *email) message(p *parsed, n sdk.Notification, now time.Time) ([]byte, error) {
	subject, text, html, err := Bodies(p, n)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	domain := "vmpulse.invalid"
	if _, d, ok := strings.Cut(p.from.Address, "@"); ok {
		domain = d
	}
	h := []struct{ k, v string }{
		{"From", p.from.String()},
		{"To", addressList(p.to)},
		{"Cc", addressList(p.cc)},
		{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		{"Date", now.Format(time.RFC1123Z)},
		// Stable across retries, so that a mailbox can drop a duplicate.
		{"Message-ID", fmt.Sprintf("<%s@%s>", messageIDPart(n.ID), domain)},
		{"MIME-Version", "1.0"},
		{"Content-Type", `multipart/alternative; boundary="` + mw.Boundary() + `"`},
		{"Content-Language", render.Lookup(n.Locale).Tag},
		{"Auto-Submitted", "auto-generated"},
		{"X-Vmpulse-Notification", n.ID},
	}
	var out bytes.Buffer
	for _, x := range h {
		if x.v != "" {
			fmt.Fprintf(&out, "%s: %s\r\n", x.k, x.v)
		}
	}
	out.WriteString("\r\n")
	for _, part := range []struct{ ctype, body string }{{"text/plain; charset=utf-8", text}, {"text/html; charset=utf-8", html}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := qp.Write([]byte(strings.ReplaceAll(part.body, "\n", "\r\n"))); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	out.Write(b.Bytes())
	return out.Bytes(), nil
}

func messageIDPart(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r < 0x7f && (r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return b.String()
}

// send runs the SMTP dialogue and maps its failures: 4xx replies retry,
// 5xx are permanent, a certificate that does not verify is permanent,
// anything else on the network retries.
func (e *email) send(ctx context.Context, p *parsed, msg []byte) (sdk.Result, error) {
	tc, err := p.TLS.Config()
	if err != nil {
		return sdk.Result{}, err
	}
	if tc.ServerName == "" {
		tc.ServerName = p.Host
	}
	addr := net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
	d := &net.Dialer{}
	var conn net.Conn
	if p.Security == SecurityTLS {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return classify(ctx, "connect", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, p.Host)
	if err != nil {
		return classify(ctx, "greeting", err)
	}
	defer c.Close()
	helo := p.HELO
	if helo == "" {
		helo = e.hostname
	}
	if err := c.Hello(helo); err != nil {
		return classify(ctx, "EHLO", err)
	}
	if p.Security == SecurityStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return sdk.PermanentResult("starttls", "the server does not offer STARTTLS; set security to tls or none"), nil
		}
		if err := c.StartTLS(tc); err != nil {
			return classify(ctx, "STARTTLS", err)
		}
	}
	if p.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return sdk.PermanentResult("auth", "the server does not offer AUTH"), nil
		}
		if err := c.Auth(smtp.PlainAuth("", p.Username, p.Password, p.Host)); err != nil {
			return classify(ctx, "AUTH", err)
		}
	}
	if err := c.Mail(p.from.Address); err != nil {
		return classify(ctx, "MAIL FROM", err)
	}
	var rejected []string
	var firstReject error
	accepted := 0
	for _, a := range append(append([]*mail.Address(nil), p.to...), p.cc...) {
		if err := c.Rcpt(a.Address); err != nil {
			var te *textproto.Error
			if !errors.As(err, &te) {
				return classify(ctx, "RCPT TO", err)
			}
			rejected = append(rejected, a.Address+" ("+strconv.Itoa(te.Code)+" "+te.Msg+")")
			if firstReject == nil {
				firstReject = err
			}
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return classify(ctx, "RCPT TO", firstReject)
	}
	w, err := c.Data()
	if err != nil {
		return classify(ctx, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return classify(ctx, "DATA", err)
	}
	_ = c.Quit()
	res := sdk.DeliveredResult("")
	res.Code = "250"
	if len(rejected) > 0 {
		res.Message = "rejected recipients: " + strings.Join(rejected, "; ")
	}
	return res, nil
}

func classify(ctx context.Context, step string, err error) (sdk.Result, error) {
	if ctx.Err() != nil {
		return sdk.Result{}, fmt.Errorf("email: %s: %w", step, ctx.Err())
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		code := strconv.Itoa(te.Code)
		msg := step + ": " + te.Msg
		if te.Code >= 400 && te.Code < 500 {
			return sdk.RetryResult(0, code, msg), nil
		}
		return sdk.PermanentResult(code, msg), nil
	}
	var cverr *tls.CertificateVerificationError
	if errors.As(err, &cverr) {
		return sdk.PermanentResult("tls", step+": "+err.Error()), nil
	}
	if strings.Contains(err.Error(), "unencrypted connection") || strings.Contains(err.Error(), "wrong host name") {
		return sdk.PermanentResult("auth", step+": "+err.Error()), nil
	}
	return sdk.RetryResult(0, "network", step+": "+err.Error()), nil
}
