package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// received is one request the test server got.
type received struct {
	header http.Header
	body   []byte
}

// The payload as README.md documents it, decoded strictly: a field the
// plugin sends that the documentation does not name fails the test.
type docPayload struct {
	Schema     string     `json:"schema"`
	ID         string     `json:"id"`
	Channel    string     `json:"channel"`
	Attempt    int        `json:"attempt"`
	Digest     bool       `json:"digest"`
	Omitted    int        `json:"omitted"`
	CreatedAt  *time.Time `json:"created_at"`
	SentAt     time.Time  `json:"sent_at"`
	ConsoleURL string     `json:"console_url"`
	Locale     string     `json:"locale"`
	Counts     struct {
		Firing   int `json:"firing"`
		Resolved int `json:"resolved"`
	} `json:"counts"`
	Alerts []struct {
		ID       string `json:"id"`
		Rule     string `json:"rule"`
		Severity string `json:"severity"`
		State    string `json:"state"`
		Entity   struct {
			Kind string `json:"kind"`
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"entity"`
		Site        string            `json:"site"`
		Summary     string            `json:"summary"`
		Description string            `json:"description"`
		Value       float64           `json:"value"`
		Threshold   float64           `json:"threshold"`
		Unit        string            `json:"unit"`
		StartsAt    time.Time         `json:"starts_at"`
		EndsAt      *time.Time        `json:"ends_at"`
		Labels      map[string]string `json:"labels"`
		URL         string            `json:"url"`
	} `json:"alerts"`
}

func digest() sdk.Notification {
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	return sdk.Notification{
		ID: "ntf-1", Channel: "ops-hook", Locale: "en", Digest: true, Omitted: 3, Attempt: 2,
		CreatedAt: t0.Add(time.Minute), ConsoleURL: "https://vmpulse.example/alerts",
		Alerts: []sdk.Alert{
			{ID: "a1", Rule: "vm.cpu.high", Severity: sdk.SeverityCritical, State: sdk.StateFiring,
				Entity: sdk.Entity{Kind: "vm", ID: "vm-42", Name: "web-1"}, Site: "sh-dc1",
				Summary: "CPU 97% on web-1", Value: 97, Threshold: 90, Unit: "%", StartsAt: t0,
				Labels: map[string]string{"cluster": "prod"}, URL: "https://vmpulse.example/alerts/a1"},
			{ID: "a2", Rule: "ds.space.low", Severity: sdk.SeverityWarning, State: sdk.StateResolved,
				Entity:  sdk.Entity{Kind: "datastore", ID: "datastore-7", Name: "ds-7"},
				Summary: "Datastore ds-7 low on space", Value: 12, Threshold: 10, Unit: "%",
				StartsAt: t0.Add(-time.Hour), EndsAt: t0},
		},
	}
}

func withConfig(n sdk.Notification, cfg map[string]any) sdk.Notification {
	n.Config, _ = json.Marshal(cfg)
	return n
}

func TestWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Header.Clone(), body})
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusAccepted)
		case "/busy":
			w.Header().Set("Retry-After", "120")
			http.Error(w, "upstream is restarting", http.StatusInternalServerError)
		case "/limited":
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case "/bad":
			http.Error(w, `{"error":"unknown channel"}`, http.StatusBadRequest)
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	}))
	defer srv.Close()
	last := func() received {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1]
	}

	n, _ := plugintest.RunNotifier(t, ".", host.Config{})
	ctx := context.Background()

	t.Run("PayloadSchemaAndSignature", func(t *testing.T) {
		secret := "s3cr3t"
		res, err := n.Notify(ctx, withConfig(digest(), map[string]any{
			"url": srv.URL + "/ok", "secret": secret, "headers": map[string]string{"Authorization": "Bearer abc", "X-Team": "ops"},
		}))
		if err != nil || res.Outcome != sdk.Delivered || res.Code != "202" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		r := last()
		for k, want := range map[string]string{
			"Content-Type": "application/json", "Authorization": "Bearer abc", "X-Team": "ops",
			"X-Vmpulse-Schema": "vmpulse.webhook.v1", "X-Vmpulse-Delivery": "ntf-1", "X-Vmpulse-Attempt": "2",
		} {
			if v := r.header.Get(k); v != want {
				t.Errorf("header %s = %q, want %q", k, v, want)
			}
		}
		// The signature, verified as README.md tells a receiver to.
		ts := r.header.Get("X-Vmpulse-Timestamp")
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
			t.Fatalf("timestamp %q", ts)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "." + string(r.body)))
		if want := "v1=" + hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(r.header.Get("X-Vmpulse-Signature")), []byte(want)) {
			t.Fatalf("signature %q, want %q", r.header.Get("X-Vmpulse-Signature"), want)
		}

		var p docPayload
		dec := json.NewDecoder(bytes.NewReader(r.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("payload does not match the documented schema: %v\n%s", err, r.body)
		}
		if p.Schema != "vmpulse.webhook.v1" || p.ID != "ntf-1" || p.Channel != "ops-hook" || !p.Digest || p.Omitted != 3 ||
			p.Attempt != 2 || p.Counts.Firing != 1 || p.Counts.Resolved != 1 || len(p.Alerts) != 2 || p.CreatedAt == nil {
			t.Fatalf("payload: %+v", p)
		}
		a, b := p.Alerts[0], p.Alerts[1]
		if a.Entity.ID != "vm-42" || a.Entity.Name != "web-1" || a.Value != 97 || a.Unit != "%" || a.EndsAt != nil ||
			a.Labels["cluster"] != "prod" || !a.StartsAt.Equal(digest().Alerts[0].StartsAt) {
			t.Fatalf("firing alert: %+v", a)
		}
		if b.State != "resolved" || b.EndsAt == nil || !b.EndsAt.Equal(digest().Alerts[1].EndsAt) {
			t.Fatalf("resolved alert: %+v", b)
		}
		// Required keys are present even when empty.
		var raw map[string]any
		_ = json.Unmarshal(r.body, &raw)
		for _, k := range []string{"schema", "id", "channel", "attempt", "digest", "omitted", "sent_at", "counts", "alerts"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("payload lacks %q", k)
			}
		}
	})

	t.Run("NoSecretNoSignature", func(t *testing.T) {
		if res, err := n.Notify(ctx, withConfig(digest(), map[string]any{"url": srv.URL + "/ok"})); err != nil || res.Outcome != sdk.Delivered {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		if h := last().header; h.Get("X-Vmpulse-Signature") != "" || h.Get("X-Vmpulse-Timestamp") != "" {
			t.Fatalf("unsigned channel sent signature headers: %v", h)
		}
	})

	t.Run("500WithRetryAfterRetries", func(t *testing.T) {
		res, err := n.Notify(ctx, withConfig(digest(), map[string]any{"url": srv.URL + "/busy"}))
		if err != nil || res.Outcome != sdk.Retry || res.RetryAfter != 120*time.Second || res.Code != "500" ||
			!strings.Contains(res.Message, "upstream is restarting") {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("429WithHTTPDateRetries", func(t *testing.T) {
		res, err := n.Notify(ctx, withConfig(digest(), map[string]any{"url": srv.URL + "/limited"}))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "429" || res.RetryAfter < 80*time.Second || res.RetryAfter > 90*time.Second {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("400IsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, withConfig(digest(), map[string]any{"url": srv.URL + "/bad"}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "400" || !strings.Contains(res.Message, "unknown channel") {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("RedirectIsNotFollowed", func(t *testing.T) {
		res, err := n.Notify(ctx, withConfig(digest(), map[string]any{"url": srv.URL + "/moved"}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "302" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("UnreachableRetries", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		res, err := n.Notify(ctx, withConfig(digest(), map[string]any{"url": dead.URL}))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "network" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("Validate", func(t *testing.T) {
		err := n.Validate(ctx, json.RawMessage(`{"url":"ftp://x","timeout":"soon","headers":{"X-Vmpulse-Signature":"x","Bad Name":"y"}}`))
		var verr *sdk.ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("validate: %v", err)
		}
		fields := map[string]bool{}
		for _, f := range verr.Fields {
			fields[f.Field] = true
		}
		for _, f := range []string{"url", "timeout", "headers.X-Vmpulse-Signature", "headers.Bad Name"} {
			if !fields[f] {
				t.Errorf("no error for %s in %v", f, verr)
			}
		}
		if err := n.Validate(ctx, json.RawMessage(`{"url":"https://hooks.example/x","secret":"s","timeout":"5s"}`)); err != nil {
			t.Fatalf("valid config refused: %v", err)
		}
	})
}
