package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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

// The robot's documented limit, and the throttle that follows a breach.
var (
	limit    = delivery.Rule{N: 20, Per: time.Minute}
	throttle = 10 * time.Minute
)

// The errcodes the plugin maps; any other non-zero one is permanent.
const (
	errTooFast  = 130101 // "send too fast, exceed 20 times per minute"
	errSecurity = 310000 // "sign not match", "keywords not in content", "invalid timestamp", "ip ... not in whitelist"
	errBusy     = -1     // "系统繁忙"
)

// maxText is where the Markdown text is cut (DingTalk takes about 20,000 bytes).
const maxText = 18000

type config struct {
	// Webhook is the robot's URL with its access_token.
	Webhook string `json:"webhook"`
	// Secret ("SEC…") turns on the signed mode.
	Secret string `json:"secret,omitempty"`
	// Keyword is one of the robot's custom keywords, when it uses that mode.
	Keyword   string   `json:"keyword,omitempty"`
	AtMobiles []string `json:"at_mobiles,omitempty"`
	AtUserIDs []string `json:"at_user_ids,omitempty"`
	AtAll     bool     `json:"at_all,omitempty"`
	chat.Common
}

type dingTalk struct {
	sender *chat.Sender
}

func newDingTalk() *dingTalk { return &dingTalk{sender: chat.NewSender(limit)} }

func parse(raw json.RawMessage) (config, chat.Parsed, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, chat.Parsed{}, err
	}
	verr := &sdk.ValidationError{}
	if u := chat.WebhookURL(verr, "webhook", c.Webhook); u != nil && u.Query().Get("access_token") == "" {
		verr.Add("webhook", "has no access_token parameter")
	}
	p := c.Common.Parse(verr)
	return c, p, verr.Err()
}

func (d *dingTalk) Validate(_ context.Context, raw json.RawMessage) error {
	_, _, err := parse(raw)
	return err
}

// Sign is the signed mode's signature: base64 of HMAC-SHA256 keyed with
// the secret over the millisecond timestamp, a newline and the secret. It
// travels URL-encoded as the sign parameter beside timestamp.
func Sign(secret string, tsMillis int64) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(tsMillis, 10) + "\n" + secret))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

type message struct {
	MsgType  string   `json:"msgtype"`
	Markdown markdown `json:"markdown"`
	At       at       `json:"at"`
}

type markdown struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

type at struct {
	AtMobiles []string `json:"atMobiles,omitempty"`
	AtUserIDs []string `json:"atUserIds,omitempty"`
	IsAtAll   bool     `json:"isAtAll"`
}

type answer struct {
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

func (d *dingTalk) Notify(ctx context.Context, n sdk.Notification) (sdk.Result, error) {
	c, p, err := parse(n.Config)
	if err != nil {
		return sdk.Result{}, err
	}
	title, body := chat.Text(n, p, c.Keyword)
	text := "### " + render.EscapeMarkdown(title) + "\n\n" + body
	// DingTalk shows a mention only when the text names it too.
	var mentions []string
	for _, m := range c.AtMobiles {
		mentions = append(mentions, "@"+m)
	}
	for _, u := range c.AtUserIDs {
		mentions = append(mentions, "@"+u)
	}
	if len(mentions) > 0 {
		text += "\n" + strings.Join(mentions, " ") + "\n"
	}
	msg := message{
		MsgType:  "markdown",
		Markdown: markdown{Title: title, Text: render.Truncate(text, maxText)},
		At:       at{AtMobiles: c.AtMobiles, AtUserIDs: c.AtUserIDs, IsAtAll: c.AtAll},
	}
	u, _ := url.Parse(c.Webhook) // parse checked it
	key := u.String()            // the robot, before the per-request parameters
	if c.Secret != "" {
		ts := d.sender.Now().UnixMilli()
		q := u.Query()
		q.Set("timestamp", strconv.FormatInt(ts, 10))
		q.Set("sign", Sign(c.Secret, ts))
		u.RawQuery = q.Encode()
	}
	resp, res, err := d.sender.Post(ctx, key, c.Common, p, u.String(), msg)
	if err != nil || res != nil {
		return deref(res), err
	}
	return d.result(key, resp), nil
}

func deref(r *sdk.Result) sdk.Result {
	if r == nil {
		return sdk.Result{}
	}
	return *r
}

// result maps DingTalk's answer. It answers HTTP 200 with an errcode.
func (d *dingTalk) result(key string, resp *delivery.Response) sdk.Result {
	var a answer
	if err := json.Unmarshal(resp.Body, &a); err != nil || a.ErrCode == nil {
		if resp.Status != 200 {
			return delivery.StatusResult(resp, d.sender.Now())
		}
		return sdk.RetryResult(0, "bad_answer", "DingTalk answered something else than its JSON: "+delivery.Snippet(resp.Body))
	}
	code := strconv.Itoa(*a.ErrCode)
	switch *a.ErrCode {
	case 0:
		return sdk.Result{Outcome: sdk.Delivered, Code: code, Message: a.ErrMsg}
	case errTooFast:
		d.sender.Limiter.Block(key, d.sender.Now().Add(throttle))
		return sdk.RetryResult(throttle, code, a.ErrMsg)
	case errBusy:
		return sdk.RetryResult(0, code, a.ErrMsg)
	case errSecurity:
		return sdk.PermanentResult(code, a.ErrMsg)
	}
	if resp.Status == 429 || resp.Status >= 500 {
		r := delivery.StatusResult(resp, d.sender.Now())
		r.Code, r.Message = code, a.ErrMsg
		return r
	}
	return sdk.PermanentResult(code, a.ErrMsg)
}
