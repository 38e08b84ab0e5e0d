package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/plugins/internal/chat"
	"github.com/vmpulse/vmpulse/plugins/internal/delivery"
	"github.com/vmpulse/vmpulse/plugins/internal/render"
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// DefaultWebhook is the robot endpoint a config with only a key posts to.
const DefaultWebhook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"

// The robot's documented limit, and how long to wait after a breach (the
// window is a rolling minute).
var (
	limit    = delivery.Rule{N: 20, Per: time.Minute}
	throttle = time.Minute
)

// The errcodes the plugin maps; any other non-zero one is permanent.
const (
	errFreqLimit = 45009 // "api freq out of limit"
	errBusy      = -1    // "system busy"
)

// maxContent is WeCom's limit on markdown.content, in bytes.
const maxContent = 4096

type config struct {
	// Webhook is the robot's URL with its key; or give Key alone.
	Webhook string `json:"webhook,omitempty"`
	Key     string `json:"key,omitempty"`
	// MentionedUserIDs are WeCom user IDs to mention (<@userid>).
	MentionedUserIDs []string `json:"mentioned_user_ids,omitempty"`
	chat.Common
}

type weCom struct {
	sender *chat.Sender
}

func newWeCom() *weCom { return &weCom{sender: chat.NewSender(limit)} }

// parse checks the config and returns the robot's URL.
func parse(raw json.RawMessage) (config, *url.URL, chat.Parsed, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, nil, chat.Parsed{}, err
	}
	verr := &sdk.ValidationError{}
	var u *url.URL
	switch {
	case c.Webhook != "" && c.Key != "":
		verr.Add("key", "give either webhook or key")
	case c.Webhook != "":
		if u = chat.WebhookURL(verr, "webhook", c.Webhook); u != nil && u.Query().Get("key") == "" {
			verr.Add("webhook", "has no key parameter")
		}
	case c.Key != "":
		u, _ = url.Parse(DefaultWebhook)
		u.RawQuery = url.Values{"key": {c.Key}}.Encode()
	default:
		verr.Add("webhook", "required (or key)")
	}
	p := c.Common.Parse(verr)
	return c, u, p, verr.Err()
}

func (w *weCom) Validate(_ context.Context, raw json.RawMessage) error {
	_, _, _, err := parse(raw)
	return err
}

type message struct {
	MsgType  string   `json:"msgtype"`
	Markdown markdown `json:"markdown"`
}

type markdown struct {
	Content string `json:"content"`
}

type answer struct {
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// Content is the markdown.content of n: the title as a heading, the body,
// the mentions, cut to WeCom's 4096 bytes.
func Content(n sdk.Notification, p chat.Parsed, mentions []string) string {
	title, body := chat.Text(n, p, "")
	var b strings.Builder
	b.WriteString("### " + render.EscapeMarkdown(title) + "\n\n" + body)
	if len(mentions) > 0 {
		b.WriteString("\n")
		for _, m := range mentions {
			b.WriteString("<@" + m + ">")
		}
		b.WriteString("\n")
	}
	return render.Truncate(b.String(), maxContent)
}

func (w *weCom) Notify(ctx context.Context, n sdk.Notification) (sdk.Result, error) {
	c, u, p, err := parse(n.Config)
	if err != nil {
		return sdk.Result{}, err
	}
	msg := message{MsgType: "markdown", Markdown: markdown{Content: Content(n, p, c.MentionedUserIDs)}}
	key := u.String()
	resp, res, err := w.sender.Post(ctx, key, c.Common, p, key, msg)
	if err != nil {
		return sdk.Result{}, err
	}
	if res != nil {
		return *res, nil
	}
	return w.result(key, resp), nil
}

// result maps WeCom's answer: HTTP 200 with an errcode.
func (w *weCom) result(key string, resp *delivery.Response) sdk.Result {
	var a answer
	if err := json.Unmarshal(resp.Body, &a); err != nil || a.ErrCode == nil {
		if resp.Status != 200 {
			return delivery.StatusResult(resp, w.sender.Now())
		}
		return sdk.RetryResult(0, "bad_answer", "WeCom answered something else than its JSON: "+delivery.Snippet(resp.Body))
	}
	code := strconv.Itoa(*a.ErrCode)
	switch *a.ErrCode {
	case 0:
		return sdk.Result{Outcome: sdk.Delivered, Code: code, Message: a.ErrMsg}
	case errFreqLimit:
		w.sender.Limiter.Block(key, w.sender.Now().Add(throttle))
		return sdk.RetryResult(throttle, code, a.ErrMsg)
	case errBusy:
		return sdk.RetryResult(0, code, a.ErrMsg)
	}
	if resp.Status == 429 || resp.Status >= 500 {
		r := delivery.StatusResult(resp, w.sender.Now())
		r.Code, r.Message = code, a.ErrMsg
		return r
	}
	return sdk.PermanentResult(code, a.ErrMsg)
}
