package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/plugins/internal/delivery"
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Schema names the payload's version; it is also sent as the
// X-Vmpulse-Schema header. A change a receiver could misread gets a new
// name (vmpulse.webhook.v2); added fields do not.
const Schema = "vmpulse.webhook.v1"

// The headers the plugin sets; a channel's own headers may not replace them.
const (
	HeaderSchema    = "X-Vmpulse-Schema"
	HeaderDelivery  = "X-Vmpulse-Delivery"
	HeaderAttempt   = "X-Vmpulse-Attempt"
	HeaderTimestamp = "X-Vmpulse-Timestamp"
	HeaderSignature = "X-Vmpulse-Signature"
)

// config is a webhook channel's config.
type config struct {
	URL     string            `json:"url"`
	Secret  string            `json:"secret,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Timeout string            `json:"timeout,omitempty"`
	TLS     delivery.TLS      `json:"tls"`
}

type webhook struct {
	clients delivery.Clients
	now     func() time.Time
}

func newWebhook() *webhook { return &webhook{now: time.Now} }

func (w *webhook) parse(raw json.RawMessage) (config, time.Duration, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, 0, err
	}
	verr := &sdk.ValidationError{}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		verr.Add("url", "want an absolute http or https URL")
	}
	for k := range c.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if strings.HasPrefix(ck, "X-Vmpulse-") || ck == "Content-Type" || ck == "Content-Length" || ck == "Host" || ck == "Transfer-Encoding" {
			verr.Add("headers."+k, "is set by the plugin")
		} else if !validHeaderName(k) {
			verr.Add("headers."+k, "not a valid header name")
		}
	}
	timeout := 10 * time.Second
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			verr.Add("timeout", "want a positive duration such as 10s")
		}
		timeout = d
	}
	c.TLS.Validate(verr)
	return c, timeout, verr.Err()
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return false
		}
	}
	return true
}

func (w *webhook) Validate(_ context.Context, raw json.RawMessage) error {
	_, _, err := w.parse(raw)
	return err
}

func (w *webhook) Notify(ctx context.Context, n sdk.Notification) (sdk.Result, error) {
	c, timeout, err := w.parse(n.Config)
	if err != nil {
		return sdk.Result{}, err
	}
	client, err := w.clients.Get(c.TLS)
	if err != nil {
		return sdk.Result{}, err
	}
	now := w.now()
	body, err := json.Marshal(NewPayload(n, now))
	if err != nil {
		return sdk.Result{}, fmt.Errorf("webhook: encode payload: %w", err)
	}
	h := http.Header{}
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "vmpulse-webhook/"+version)
	h.Set(HeaderSchema, Schema)
	h.Set(HeaderDelivery, n.ID)
	h.Set(HeaderAttempt, strconv.Itoa(n.Attempt))
	if c.Secret != "" {
		ts := strconv.FormatInt(now.Unix(), 10)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, Sign(c.Secret, ts, body))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := delivery.Post(ctx, client, c.URL, h, body)
	if err != nil {
		return delivery.NetworkResult(ctx, err)
	}
	return delivery.StatusResult(resp, w.now()), nil
}

// Sign is the signature header's value: "v1=" and the hex HMAC-SHA256,
// keyed with the channel's secret, of the timestamp header's value, a dot
// and the raw body.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Payload is the JSON body of schema vmpulse.webhook.v1.
type Payload struct {
	Schema     string    `json:"schema"`
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	Attempt    int       `json:"attempt"`
	Digest     bool      `json:"digest"`
	Omitted    int       `json:"omitted"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
	SentAt     time.Time `json:"sent_at"`
	ConsoleURL string    `json:"console_url,omitempty"`
	Locale     string    `json:"locale,omitempty"`
	Counts     Counts    `json:"counts"`
	Alerts     []Alert   `json:"alerts"`
}

// Counts counts a payload's alerts by state.
type Counts struct {
	Firing   int `json:"firing"`
	Resolved int `json:"resolved"`
}

// Alert is one alert of a payload.
type Alert struct {
	ID          string            `json:"id"`
	Rule        string            `json:"rule"`
	Severity    string            `json:"severity"`
	State       string            `json:"state"`
	Entity      Entity            `json:"entity"`
	Site        string            `json:"site,omitempty"`
	Summary     string            `json:"summary"`
	Description string            `json:"description,omitempty"`
	Value       float64           `json:"value"`
	Threshold   float64           `json:"threshold"`
	Unit        string            `json:"unit,omitempty"`
	StartsAt    time.Time         `json:"starts_at"`
	EndsAt      time.Time         `json:"ends_at,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
	URL         string            `json:"url,omitempty"`
}

// Entity is what an alert is about.
type Entity struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// NewPayload builds the payload of n as sent at now.
func NewPayload(n sdk.Notification, now time.Time) Payload {
	p := Payload{
		Schema: Schema, ID: n.ID, Channel: n.Channel, Attempt: n.Attempt, Digest: n.Digest, Omitted: n.Omitted,
		CreatedAt: n.CreatedAt.UTC(), SentAt: now.UTC(), ConsoleURL: n.ConsoleURL, Locale: n.Locale,
		Alerts: make([]Alert, len(n.Alerts)),
	}
	for i, a := range n.Alerts {
		if a.State == sdk.StateResolved {
			p.Counts.Resolved++
		} else {
			p.Counts.Firing++
		}
		p.Alerts[i] = Alert{
			ID: a.ID, Rule: a.Rule, Severity: a.Severity, State: a.State,
			Entity: Entity{Kind: a.Entity.Kind, ID: a.Entity.ID, Name: a.Entity.Name},
			Site:   a.Site, Summary: a.Summary, Description: a.Description,
			Value: a.Value, Threshold: a.Threshold, Unit: a.Unit,
			StartsAt: a.StartsAt.UTC(), EndsAt: a.EndsAt.UTC(), Labels: a.Labels, URL: a.URL,
		}
	}
	return p
}
