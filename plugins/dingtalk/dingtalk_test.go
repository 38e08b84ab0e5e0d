package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// robot is one fake DingTalk custom robot with its security settings.
type robot struct {
	secret  string // signed mode
	keyword string // custom-keyword mode
	limited bool   // answers "send too fast" to everything
}

// fakeDingTalk checks requests the way DingTalk documents and answers with
// its real bodies (HTTP 200 and an errcode).
type fakeDingTalk struct {
	mu     sync.Mutex
	robots map[string]robot
	got    map[string][]message // accepted messages by access_token
	hits   map[string]int       // requests by access_token
}

const more = ", more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"

func (f *fakeDingTalk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	answer := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"errcode":%d,"errmsg":%q}`, code, msg)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/robot/send" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	token := q.Get("access_token")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[token]++
	rb, ok := f.robots[token]
	if !ok {
		answer(300001, "token is not exist")
		return
	}
	if rb.secret != "" {
		ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
		if err != nil || time.Since(time.UnixMilli(ts)).Abs() > time.Hour {
			answer(310000, "invalid timestamp"+more)
			return
		}
		// sign = urlEncode(base64(HmacSHA256(key=secret, msg=timestamp+"\n"+secret)))
		mac := hmac.New(sha256.New, []byte(rb.secret))
		mac.Write([]byte(q.Get("timestamp") + "\n" + rb.secret))
		want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if q.Get("sign") != want || !strings.Contains(r.URL.RawQuery, "sign="+url.QueryEscape(want)) {
			answer(310000, "sign not match"+more)
			return
		}
	}
	var m message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.MsgType != "markdown" || m.Markdown.Text == "" || m.Markdown.Title == "" {
		answer(40035, "缺少参数 json")
		return
	}
	if rb.keyword != "" && !strings.Contains(m.Markdown.Title+m.Markdown.Text, rb.keyword) {
		answer(310000, "keywords not in content"+more)
		return
	}
	if rb.limited || len(f.got[token]) >= 20 {
		answer(130101, "send too fast, exceed 20 times per minute"+more)
		return
	}
	f.got[token] = append(f.got[token], m)
	answer(0, "ok")
}

func (f *fakeDingTalk) count(token string) (hits, accepted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[token], len(f.got[token])
}

func (f *fakeDingTalk) last(token string) message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[token][len(f.got[token])-1]
}

func alert(locale string, cfg map[string]any) sdk.Notification {
	raw, _ := json.Marshal(cfg)
	return sdk.Notification{
		ID: "ntf-1", Channel: "ops-ding", Config: raw, Locale: locale, Attempt: 1,
		Alerts: []sdk.Alert{{
			ID: "a1", Rule: "host.power.fail", Severity: sdk.SeverityCritical, State: sdk.StateFiring,
			Entity: sdk.Entity{Kind: "host", ID: "host-12", Name: "esx-12"}, Site: "bj-dc2",
			Summary: "电源故障 PSU 2", StartsAt: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
			URL: "https://vmpulse.example/alerts/a1",
		}},
	}
}

func TestDingTalk(t *testing.T) {
	fake := &fakeDingTalk{
		robots: map[string]robot{
			"signed":  {secret: "SECf00d"},
			"keyword": {keyword: "vmpulse-alert"},
			"limited": {secret: "SECf00d", limited: true},
			"storm":   {},
		},
		got: map[string][]message{}, hits: map[string]int{},
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	hook := func(token string) string { return srv.URL + "/robot/send?access_token=" + token }

	n, _ := plugintest.RunNotifier(t, ".", host.Config{})
	ctx := context.Background()

	t.Run("SignedMarkdownWithMentions", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("zh-CN", map[string]any{
			"webhook": hook("signed"), "secret": "SECf00d", "at_mobiles": []string{"13800000000"}, "timezone": "Asia/Shanghai",
		}))
		if err != nil || res.Outcome != sdk.Delivered || res.Code != "0" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		m := fake.last("signed")
		if m.Markdown.Title != "[告警中] 严重: 电源故障 PSU 2 — esx-12" {
			t.Errorf("title %q", m.Markdown.Title)
		}
		for _, want := range []string{"对象: host esx-12 (host-12)", "站点: bj-dc2", "2026-03-01 16:00:00 CST", "@13800000000", "[在 vmpulse 中查看](https://vmpulse.example/alerts/a1)"} {
			if !strings.Contains(m.Markdown.Text, want) {
				t.Errorf("text lacks %q:\n%s", want, m.Markdown.Text)
			}
		}
		if len(m.At.AtMobiles) != 1 || m.At.AtMobiles[0] != "13800000000" || m.At.IsAtAll {
			t.Errorf("at: %+v", m.At)
		}
	})

	t.Run("WrongSecretIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("signed"), "secret": "SECbad"}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "310000" || !strings.HasPrefix(res.Message, "sign not match") {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("KeywordMissingIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("keyword")}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "310000" || !strings.HasPrefix(res.Message, "keywords not in content") {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		res, err = n.Notify(ctx, alert("en", map[string]any{"webhook": hook("keyword"), "keyword": "vmpulse-alert"}))
		if err != nil || res.Outcome != sdk.Delivered {
			t.Fatalf("with keyword: %+v, %v", res, err)
		}
	})

	t.Run("ThrottledRobotRetriesAfterTenMinutes", func(t *testing.T) {
		cfg := map[string]any{"webhook": hook("limited"), "secret": "SECf00d"}
		res, err := n.Notify(ctx, alert("en", cfg))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "130101" || res.RetryAfter != 10*time.Minute {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		// The plugin now holds the robot back itself: no second request.
		res, err = n.Notify(ctx, alert("en", cfg))
		if hits, _ := fake.count("limited"); err != nil || res.Outcome != sdk.Retry || res.Code != "local_rate_limit" ||
			res.RetryAfter <= 9*time.Minute || hits != 1 {
			t.Fatalf("second: %+v, %v, hits %d", res, err, hits)
		}
	})

	t.Run("StormStaysUnderTheLimit", func(t *testing.T) {
		cfg := map[string]any{"webhook": hook("storm")}
		var delivered, held int
		for i := range 25 {
			res, err := n.Notify(ctx, alert("en", cfg))
			switch {
			case err != nil:
				t.Fatal(err)
			case res.Outcome == sdk.Delivered:
				delivered++
			case res.Outcome == sdk.Retry && res.Code == "local_rate_limit" && res.RetryAfter > 0 && res.RetryAfter <= time.Minute:
				held++
			default:
				t.Fatalf("message %d: %+v", i, res)
			}
		}
		hits, accepted := fake.count("storm")
		if delivered != 20 || held != 5 || hits != 20 || accepted != 20 {
			t.Fatalf("delivered %d, held %d, robot saw %d", delivered, held, hits)
		}
	})

	t.Run("UnknownTokenIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("gone")}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "300001" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("Validate", func(t *testing.T) {
		err := n.Validate(ctx, json.RawMessage(`{"webhook":"https://oapi.dingtalk.com/robot/send","timezone":"Nowhere/Land"}`))
		var verr *sdk.ValidationError
		if !errors.As(err, &verr) || len(verr.Fields) != 2 || verr.Fields[0].Field != "webhook" || verr.Fields[1].Field != "timezone" {
			t.Fatalf("validate: %v", err)
		}
	})
}

func TestSignIsHMACOfTimestampAndSecret(t *testing.T) {
	// base64(HMAC-SHA256(key=secret, msg=timestampMs+"\n"+secret)), computed here by hand.
	secret := "SEC1234567890abcdef"
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("1577262236757\n" + secret))
	if got, want := Sign(secret, 1577262236757), base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
