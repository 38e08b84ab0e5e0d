package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// fakeWeCom answers like the group-robot webhook: HTTP 200 and an errcode.
type fakeWeCom struct {
	mu      sync.Mutex
	keys    map[string]bool // valid keys
	limited map[string]bool
	got     map[string][]message
	hits    map[string]int
}

func (f *fakeWeCom) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	answer := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		fmt.Fprintf(w, `{"errcode":%d,"errmsg":%q}`, code, msg)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/cgi-bin/webhook/send" {
		http.NotFound(w, r)
		return
	}
	key := r.URL.Query().Get("key")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[key]++
	if !f.keys[key] {
		answer(93000, "invalid webhook url, hint: [1772352000282003512836770], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000")
		return
	}
	var m message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.MsgType != "markdown" {
		answer(40008, "invalid message type, hint: [1772352000282003512836771]")
		return
	}
	if len(m.Markdown.Content) > 4096 {
		answer(40058, "markdown.content exceed max length 4096. invalid Request Parameter, hint: [1772352000282003512836772]")
		return
	}
	if f.limited[key] || len(f.got[key]) >= 20 {
		answer(45009, "api freq out of limit, hint: [1772352000282003512836773], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=45009")
		return
	}
	f.got[key] = append(f.got[key], m)
	answer(0, "ok")
}

func (f *fakeWeCom) last(key string) message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[key][len(f.got[key])-1]
}

func (f *fakeWeCom) hitsOf(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[key]
}

func alert(locale string, cfg map[string]any, alerts int) sdk.Notification {
	raw, _ := json.Marshal(cfg)
	n := sdk.Notification{ID: "ntf-1", Channel: "ops-wecom", Config: raw, Locale: locale, Attempt: 1}
	for i := range alerts {
		n.Alerts = append(n.Alerts, sdk.Alert{
			ID: fmt.Sprint("a", i), Rule: "ds.latency", Severity: sdk.SeverityWarning, State: sdk.StateFiring,
			Entity:  sdk.Entity{Kind: "datastore", ID: fmt.Sprint("datastore-", i), Name: fmt.Sprint("ds-", i)},
			Summary: "データストアの遅延が高い", Value: 48, Threshold: 30, Unit: "ms",
			StartsAt: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
		})
	}
	n.Digest = alerts > 1
	return n
}

func TestWeCom(t *testing.T) {
	fake := &fakeWeCom{
		keys:    map[string]bool{"k-good": true, "k-limited": true},
		limited: map[string]bool{"k-limited": true},
		got:     map[string][]message{}, hits: map[string]int{},
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	hook := func(key string) string { return srv.URL + "/cgi-bin/webhook/send?key=" + key }

	n, _ := plugintest.RunNotifier(t, ".", host.Config{})
	ctx := context.Background()

	t.Run("MarkdownDelivered", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("ja-JP", map[string]any{"webhook": hook("k-good"), "mentioned_user_ids": []string{"zhangsan"}, "timezone": "Asia/Tokyo"}, 1))
		if err != nil || res.Outcome != sdk.Delivered || res.Code != "0" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		c := fake.last("k-good").Markdown.Content
		for _, want := range []string{"### [発生中] 警告: データストアの遅延が高い", "対象: datastore ds-0 (datastore-0)", "値: 48 ms (しきい値 30 ms)", "2026-03-01 17:00:00 JST", "<@zhangsan>"} {
			if !strings.Contains(c, want) {
				t.Errorf("content lacks %q:\n%s", want, c)
			}
		}
	})

	t.Run("LongDigestFitsTheLimit", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("k-good"), "max_alerts": 100}, 80))
		if err != nil || res.Outcome != sdk.Delivered {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		if c := fake.last("k-good").Markdown.Content; len(c) > 4096 || !strings.HasSuffix(c, "…") {
			t.Fatalf("content of %d bytes", len(c))
		}
	})

	t.Run("BadKeyIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("k-revoked")}, 1))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "93000" || !strings.HasPrefix(res.Message, "invalid webhook url") {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("FrequencyLimitRetries", func(t *testing.T) {
		cfg := map[string]any{"webhook": hook("k-limited")}
		res, err := n.Notify(ctx, alert("en", cfg, 1))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "45009" || res.RetryAfter != time.Minute {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		res, err = n.Notify(ctx, alert("en", cfg, 1))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "local_rate_limit" || fake.hitsOf("k-limited") != 1 {
			t.Fatalf("second: %+v, %v, hits %d", res, err, fake.hitsOf("k-limited"))
		}
	})

	t.Run("Validate", func(t *testing.T) {
		var verr *sdk.ValidationError
		if err := n.Validate(ctx, json.RawMessage(`{}`)); !errors.As(err, &verr) || verr.Fields[0].Field != "webhook" {
			t.Fatalf("empty: %v", err)
		}
		if err := n.Validate(ctx, json.RawMessage(`{"webhook":"https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}`)); !errors.As(err, &verr) {
			t.Fatalf("no key: %v", err)
		}
		if err := n.Validate(ctx, json.RawMessage(`{"key":"693a91f6-7xxx"}`)); err != nil {
			t.Fatalf("key alone: %v", err)
		}
	})
}
