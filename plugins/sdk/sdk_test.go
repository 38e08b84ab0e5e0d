package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// echo records what crossed the connection and answers what it is told.
type echo struct {
	got    sdk.Notification
	result sdk.Result
	err    error
	since  time.Time
}

func (e *echo) Validate(_ context.Context, raw json.RawMessage) error {
	var c struct {
		URL string `json:"url"`
	}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	verr := &sdk.ValidationError{}
	if c.URL == "" {
		verr.Add("url", "required")
	}
	return verr.Err()
}

func (e *echo) Notify(_ context.Context, n sdk.Notification) (sdk.Result, error) {
	e.got = n
	return e.result, e.err
}

func (e *echo) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Interval: time.Minute, Series: []sdk.Series{{Name: "fan", Unit: "rpm", EntityKind: "host", Type: sdk.Gauge}}}, nil
}

func (e *echo) Collect(_ context.Context, since time.Time) ([]sdk.Sample, error) {
	e.since = since
	return []sdk.Sample{{Series: "fan", Entity: sdk.Entity{Kind: "host", ID: "host-1"}, Time: since.Add(time.Second), Value: 4200,
		Labels: map[string]string{"fan": "2"}}}, nil
}

func TestNotificationCrossesIntact(t *testing.T) {
	impl := &echo{result: sdk.RetryResult(90*time.Second, "130101", "send too fast")}
	n := plugintest.Notifier(t, impl)
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 123456789, time.UTC)
	want := sdk.Notification{
		ID: "n1", Channel: "c", Config: json.RawMessage(`{"url":"x"}`), Locale: "ja-JP", Digest: true,
		Omitted: 4, Attempt: 3, CreatedAt: t0, ConsoleURL: "https://vmpulse.example",
		Alerts: []sdk.Alert{
			{ID: "a1", Rule: "r", Severity: sdk.SeverityCritical, State: sdk.StateFiring,
				Entity: sdk.Entity{Kind: "vm", ID: "vm-1", Name: "web"}, Site: "s", Summary: "sum", Description: "d",
				Value: 97.5, Threshold: 90, Unit: "%", StartsAt: t0, Labels: map[string]string{"k": "v"}, URL: "u"},
			{ID: "a2", State: sdk.StateResolved, StartsAt: t0, EndsAt: t0.Add(time.Hour)},
		},
	}
	res, err := n.Notify(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if res != impl.result {
		t.Fatalf("result %+v, want %+v", res, impl.result)
	}
	if !reflect.DeepEqual(impl.got, want) {
		t.Fatalf("plugin got\n%+v\nwant\n%+v", impl.got, want)
	}
	if !impl.got.Alerts[0].EndsAt.IsZero() {
		t.Fatal("a firing alert's EndsAt is not zero after the trip")
	}
}

func TestErrorsCrossIntact(t *testing.T) {
	impl := &echo{}
	n := plugintest.Notifier(t, impl)
	err := n.Validate(context.Background(), json.RawMessage(`{"uri":"x"}`))
	var verr *sdk.ValidationError
	if !errors.As(err, &verr) || len(verr.Fields) != 1 || verr.Fields[0] != (sdk.FieldError{Field: "uri", Message: "unknown field"}) {
		t.Fatalf("validate: %v", err)
	}
	if err := n.Validate(context.Background(), json.RawMessage(`{}`)); !errors.As(err, &verr) || verr.Fields[0].Field != "url" {
		t.Fatalf("validate: %v", err)
	}
	impl.err = errors.New("smtp config unusable")
	_, err = n.Notify(context.Background(), sdk.Notification{ID: "x"})
	var perr *sdk.PluginError
	if !errors.As(err, &perr) || perr.Method != "notify" || perr.Message != "smtp config unusable" {
		t.Fatalf("notify: %#v", err)
	}
	impl.err = context.DeadlineExceeded
	if _, err = n.Notify(context.Background(), sdk.Notification{ID: "x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	impl.err, impl.result = nil, sdk.Result{Outcome: 7}
	if _, err = n.Notify(context.Background(), sdk.Notification{ID: "x"}); !errors.As(err, &perr) {
		t.Fatalf("bad outcome accepted: %v", err)
	}
}

func TestCollectorCrossesIntact(t *testing.T) {
	impl := &echo{}
	c := plugintest.Collector(t, impl)
	d, err := c.Describe(context.Background())
	if err != nil || d.Interval != time.Minute || len(d.Series) != 1 || d.Series[0].Unit != "rpm" {
		t.Fatalf("describe: %+v, %v", d, err)
	}
	since := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	s, err := c.Collect(context.Background(), since)
	if err != nil || !impl.since.Equal(since) || len(s) != 1 || s[0].Value != 4200 || !s[0].Time.Equal(since.Add(time.Second)) || s[0].Labels["fan"] != "2" {
		t.Fatalf("collect: %+v, %v", s, err)
	}
	if _, err := c.Collect(context.Background(), time.Time{}); err != nil || !impl.since.IsZero() {
		t.Fatalf("zero since became %v, %v", impl.since, err)
	}
}

func TestDecodeConfig(t *testing.T) {
	type cfg struct {
		URL  string `json:"url"`
		Port int    `json:"port"`
	}
	for _, tc := range []struct{ in, field, msg string }{
		{`{"url":"x","port":"25"}`, "port", "want int"},
		{`{"url":"x","prot":25}`, "prot", "unknown field"},
		{`{"url":`, "", "not JSON"},
		{`{"url":"x"} {}`, "", "trailing data"},
	} {
		var c cfg
		err := sdk.DecodeConfig(json.RawMessage(tc.in), &c)
		var verr *sdk.ValidationError
		if !errors.As(err, &verr) || verr.Fields[0].Field != tc.field || !strings.Contains(verr.Fields[0].Message, tc.msg) {
			t.Errorf("%s: %v", tc.in, err)
		}
	}
	var c cfg
	if err := sdk.DecodeConfig(nil, &c); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}
