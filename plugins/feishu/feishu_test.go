package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
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

type bot struct {
	secret  string
	keyword string
	limited bool
	legacy  bool // answers in the older StatusCode shape
}

// fakeFeishu checks requests the way Feishu documents its custom bots and
// answers with their real bodies.
type fakeFeishu struct {
	mu   sync.Mutex
	bots map[string]bot
	got  map[string][]message
	hits map[string]int
}

func (f *fakeFeishu) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	answer := func(body string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/open-apis/bot/v2/hook/")
	if r.Method != http.MethodPost || !ok {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[token]++
	b, ok := f.bots[token]
	if !ok {
		answer(`{"code":19001,"data":{},"msg":"param invalid: incoming webhook access token invalid"}`)
		return
	}
	var m message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		answer(`{"code":9499,"data":{},"msg":"Bad Request"}`)
		return
	}
	if b.secret != "" {
		// sign = base64(HmacSHA256(key=timestamp+"\n"+secret, msg=""))
		ts, err := strconv.ParseInt(m.Timestamp, 10, 64)
		mac := hmac.New(sha256.New, []byte(m.Timestamp+"\n"+b.secret))
		want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Hour || m.Sign != want {
			answer(`{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}`)
			return
		}
	}
	if m.MsgType != "interactive" || len(m.Card.Elements) == 0 {
		answer(`{"code":19002,"data":{},"msg":"params error, msg_type need"}`)
		return
	}
	if b.keyword != "" && !strings.Contains(m.Card.Header.Title.Content+m.Card.Elements[0].Content, b.keyword) {
		answer(`{"code":19024,"data":{},"msg":"Key Words Not Found"}`)
		return
	}
	if b.limited {
		answer(`{"code":11232,"data":{},"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]"}`)
		return
	}
	f.got[token] = append(f.got[token], m)
	if b.legacy {
		answer(`{"Extra":null,"StatusCode":0,"StatusMessage":"success"}`)
		return
	}
	answer(`{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}`)
}

func (f *fakeFeishu) last(token string) message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[token][len(f.got[token])-1]
}

func (f *fakeFeishu) count(token string) (hits, accepted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[token], len(f.got[token])
}

func alert(locale string, cfg map[string]any) sdk.Notification {
	raw, _ := json.Marshal(cfg)
	return sdk.Notification{
		ID: "ntf-1", Channel: "ops-feishu", Config: raw, Locale: locale, Attempt: 1,
		Alerts: []sdk.Alert{{
			ID: "a1", Rule: "vm.mem.balloon", Severity: sdk.SeverityWarning, State: sdk.StateResolved,
			Entity: sdk.Entity{Kind: "vm", ID: "vm-9", Name: "db-1"}, Summary: "内存气球回收",
			StartsAt: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), EndsAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
		}},
	}
}

func TestFeishu(t *testing.T) {
	fake := &fakeFeishu{
		bots: map[string]bot{
			"signed":  {secret: "feishu-secret"},
			"keyword": {keyword: "vmpulse"},
			"limited": {limited: true},
			"legacy":  {legacy: true},
			"storm":   {},
		},
		got: map[string][]message{}, hits: map[string]int{},
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	hook := func(token string) string { return srv.URL + "/open-apis/bot/v2/hook/" + token }

	n, _ := plugintest.RunNotifier(t, ".", host.Config{})
	ctx := context.Background()

	t.Run("SignedCardDelivered", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("zh-CN", map[string]any{"webhook": hook("signed"), "secret": "feishu-secret", "timezone": "Asia/Shanghai"}))
		if err != nil || res.Outcome != sdk.Delivered || res.Code != "0" || res.Message != "success" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		m := fake.last("signed")
		if m.Card.Header.Title.Content != "[已恢复] 警告: 内存气球回收 — db-1" || m.Card.Header.Template != "green" {
			t.Errorf("header: %+v", m.Card.Header)
		}
		body := m.Card.Elements[0].Content
		for _, want := range []string{"恢复时间: 2026-03-01 17:00:00 CST", "对象: vm db-1 (vm-9)"} {
			if !strings.Contains(body, want) {
				t.Errorf("card lacks %q:\n%s", want, body)
			}
		}
	})

	t.Run("WrongSecretIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("signed"), "secret": "other"}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "19021" || !strings.HasPrefix(res.Message, "sign match fail") {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("KeywordMissingIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("keyword")}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "19024" || res.Message != "Key Words Not Found" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		res, err = n.Notify(ctx, alert("en", map[string]any{"webhook": hook("keyword"), "keyword": "vmpulse"}))
		if err != nil || res.Outcome != sdk.Delivered {
			t.Fatalf("with keyword: %+v, %v", res, err)
		}
	})

	t.Run("FrequencyLimitedRetries", func(t *testing.T) {
		cfg := map[string]any{"webhook": hook("limited")}
		res, err := n.Notify(ctx, alert("en", cfg))
		if err != nil || res.Outcome != sdk.Retry || res.Code != "11232" || res.RetryAfter != 30*time.Second {
			t.Fatalf("notify: %+v, %v", res, err)
		}
		res, err = n.Notify(ctx, alert("en", cfg))
		if hits, _ := fake.count("limited"); err != nil || res.Outcome != sdk.Retry || res.Code != "local_rate_limit" || hits != 1 {
			t.Fatalf("second: %+v, %v, hits %d", res, err, hits)
		}
	})

	t.Run("LegacyAnswerShape", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("legacy")}))
		if err != nil || res.Outcome != sdk.Delivered {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("FivePerSecond", func(t *testing.T) {
		cfg := map[string]any{"webhook": hook("storm")}
		var held int
		for range 7 {
			res, err := n.Notify(ctx, alert("en", cfg))
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome == sdk.Retry && res.Code == "local_rate_limit" && res.RetryAfter <= time.Second {
				held++
			}
		}
		// 7 messages in well under a second: 5 pass, 2 wait for the next
		// second (a very slow machine may let a sixth through).
		if hits, _ := fake.count("storm"); hits+held != 7 || hits < 5 || held < 1 {
			t.Fatalf("bot saw %d, held %d", hits, held)
		}
	})

	t.Run("UnknownTokenIsPermanent", func(t *testing.T) {
		res, err := n.Notify(ctx, alert("en", map[string]any{"webhook": hook("gone")}))
		if err != nil || res.Outcome != sdk.Permanent || res.Code != "19001" {
			t.Fatalf("notify: %+v, %v", res, err)
		}
	})

	t.Run("Validate", func(t *testing.T) {
		var verr *sdk.ValidationError
		if err := n.Validate(ctx, json.RawMessage(`{"webhook":"https://open.feishu.cn/other"}`)); !errors.As(err, &verr) || verr.Fields[0].Field != "webhook" {
			t.Fatalf("validate: %v", err)
		}
	})
}

func TestSignIsHMACKeyedWithTimestampAndSecret(t *testing.T) {
	mac := hmac.New(sha256.New, []byte("1599360473\nsecret"))
	mac.Write(nil)
	if got, want := Sign("secret", 1599360473), base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
