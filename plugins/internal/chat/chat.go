// Package chat is what the DingTalk, WeCom and Feishu notifier plugins
// share: the config fields every robot has, the POST with the local rate
// limit in front of it, and the message text.
package chat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/vmpulse/vmpulse/plugins/internal/delivery"
	"github.com/vmpulse/vmpulse/plugins/internal/render"
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Common is the part of a robot channel's config that every service has.
// Plugins embed it in their config.
type Common struct {
	// Timezone is the IANA zone alert times are shown in (default UTC).
	Timezone string `json:"timezone,omitempty"`
	// Timeout bounds one POST (default 10s).
	Timeout string `json:"timeout,omitempty"`
	// MaxAlerts caps the alerts listed in one message (default 10); the
	// rest are counted.
	MaxAlerts int          `json:"max_alerts,omitempty"`
	TLS       delivery.TLS `json:"tls"`
}

// Parsed is Common checked, with its defaults.
type Parsed struct {
	Loc       *time.Location
	Timeout   time.Duration
	MaxAlerts int
}

// Parse checks c, adding its problems to verr.
func (c Common) Parse(verr *sdk.ValidationError) Parsed {
	p := Parsed{Timeout: 10 * time.Second, MaxAlerts: 10}
	var err error
	if p.Loc, err = render.Location(c.Timezone); err != nil {
		verr.Add("timezone", "unknown time zone %q", c.Timezone)
	}
	if c.Timeout != "" {
		if p.Timeout, err = time.ParseDuration(c.Timeout); err != nil || p.Timeout <= 0 {
			verr.Add("timeout", "want a positive duration such as 10s")
		}
	}
	switch {
	case c.MaxAlerts < 0:
		verr.Add("max_alerts", "must not be negative")
	case c.MaxAlerts > 0:
		p.MaxAlerts = c.MaxAlerts
	}
	c.TLS.Validate(verr)
	return p
}

// WebhookURL parses a robot's webhook URL, adding a problem to verr under
// field when it is not an absolute http(s) URL.
func WebhookURL(verr *sdk.ValidationError, field, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		verr.Add(field, "want the robot's https webhook URL")
		return nil
	}
	return u
}

// Sender posts JSON to robots, one HTTP client per TLS config, keeping
// each robot (by key) under the service's rate limits.
type Sender struct {
	Limiter *delivery.Limiter
	clients delivery.Clients
	Now     func() time.Time
}

// NewSender returns a Sender enforcing rules per robot.
func NewSender(rules ...delivery.Rule) *Sender {
	return &Sender{Limiter: delivery.NewLimiter(rules...), Now: time.Now}
}

// Post reserves a slot for robot key and POSTs body as JSON to u. It
// returns the answer, or a Retry result when the local limit holds the
// message back or the network failed (the result is then set and resp nil).
func (s *Sender) Post(ctx context.Context, key string, c Common, p Parsed, u string, body any) (*delivery.Response, *sdk.Result, error) {
	if wait := s.Limiter.Reserve(key, s.Now()); wait > 0 {
		r := sdk.RetryResult(wait, "local_rate_limit",
			fmt.Sprintf("held back to stay under the robot's rate limit; next slot in %s", wait.Round(time.Millisecond)))
		return nil, &r, nil
	}
	client, err := s.clients.Get(c.TLS)
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, nil, fmt.Errorf("encode message: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	resp, err := delivery.Post(ctx, client, u, http.Header{"Content-Type": {"application/json; charset=utf-8"}}, b)
	if err != nil {
		r, err := delivery.NetworkResult(ctx, err)
		if err != nil {
			return nil, nil, err
		}
		return nil, &r, nil
	}
	return resp, nil, nil
}

// Text renders n for a robot: the title and the Markdown body in the
// channel's language, with keyword (the robot's custom-keyword security
// setting, if any) leading the title so that the service accepts it.
func Text(n sdk.Notification, p Parsed, keyword string) (title, body string) {
	l := render.Lookup(n.Locale)
	title, body = render.Markdown(l, n, p.Loc, p.MaxAlerts)
	if keyword != "" {
		title = "[" + keyword + "] " + title
	}
	return title, body
}
