package delivery

import (
	"net/http"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(Rule{N: 3, Per: time.Minute}, Rule{N: 2, Per: time.Second})
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, step := range []struct {
		at   time.Duration
		wait time.Duration
	}{
		{0, 0},
		{100 * time.Millisecond, 0},
		{200 * time.Millisecond, 800 * time.Millisecond}, // 2 a second
		{time.Second, 0},
		{2 * time.Second, 58 * time.Second}, // 3 a minute: the first leaves the window at 60s
		{60 * time.Second, 0},
	} {
		if got := l.Reserve("robot", at(step.at)); got != step.wait {
			t.Fatalf("at %s: wait %s, want %s", step.at, got, step.wait)
		}
	}
	if got := l.Reserve("other", at(2*time.Second)); got != 0 {
		t.Fatalf("robots share a window: %s", got)
	}
	l.Block("other", at(10*time.Minute))
	if got := l.Reserve("other", at(3*time.Second)); got != 10*time.Minute-3*time.Second {
		t.Fatalf("blocked robot: wait %s", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"120":                           120 * time.Second,
		"-5":                            0,
		"soon":                          0,
		"Sun, 01 Mar 2026 08:01:30 GMT": 90 * time.Second,
		"999999999":                     MaxRetryAfter,
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := RetryAfter(h, now); got != want {
			t.Errorf("Retry-After %q = %s, want %s", v, got, want)
		}
	}
}

func TestStatusResult(t *testing.T) {
	now := time.Now()
	for status, want := range map[int]sdk.Outcome{
		200: sdk.Delivered, 204: sdk.Delivered, 301: sdk.Permanent, 400: sdk.Permanent, 401: sdk.Permanent,
		404: sdk.Permanent, 408: sdk.Retry, 429: sdk.Retry, 500: sdk.Retry, 503: sdk.Retry,
	} {
		if got := StatusResult(&Response{Status: status, Header: http.Header{}}, now); got.Outcome != want {
			t.Errorf("%d: %v, want %v", status, got.Outcome, want)
		}
	}
}
