package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/plugins/internal/chat"
	"github.com/vmpulse/vmpulse/plugins/internal/delivery"
	"github.com/vmpulse/vmpulse/plugins/internal/render"
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// The bot's documented limits, and how long to hold it back after it
// answered "frequency limited".
var (
	limits   = []delivery.Rule{{N: 100, Per: time.Minute}, {N: 5, Per: time.Second}}
	throttle = 30 * time.Second
)

// The codes the plugin maps; any other non-zero one is permanent.
const (
	codeFrequencyLimited = 11232 // "frequency limited psm[…]appID[…]"
	codeBadRequest       = 9499  // "Bad Request", or "too many request"
	codeSignFail         = 19021 // "sign match fail or timestamp is not within one hour from current time"
	codeKeywords         = 19024 // "Key Words Not Found"
)

// maxCard keeps a card well under Feishu's 30 KB request limit.
const maxCard = 20000

type config struct {
	// Webhook is the bot's URL (…/open-apis/bot/v2/hook/<token>).
	Webhook string `json:"webhook"`
	// Secret turns on the signed mode.
	Secret string `json:"secret,omitempty"`
	// Keyword is one of the bot's custom keywords, when it uses that mode.
	Keyword string `json:"keyword,omitempty"`
	chat.Common
}

type feishu struct {
	sender *chat.Sender
}

func newFeishu() *feishu { return &feishu{sender: chat.NewSender(limits...)} }

func parse(raw json.RawMessage) (config, chat.Parsed, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, chat.Parsed{}, err
	}
	verr := &sdk.ValidationError{}
	if u := chat.WebhookURL(verr, "webhook", c.Webhook); u != nil && !strings.Contains(u.Path, "/bot/v2/hook/") {
		verr.Add("webhook", "want the bot's …/open-apis/bot/v2/hook/<token> URL")
	}
	p := c.Common.Parse(verr)
	return c, p, verr.Err()
}

func (f *feishu) Validate(_ context.Context, raw json.RawMessage) error {
	_, _, err := parse(raw)
	return err
}

// Sign is the signed mode's signature: base64 of HMAC-SHA256 keyed with
// the timestamp in seconds, a newline and the secret, over an empty
// message (key and message are the reverse of DingTalk's).
func Sign(secret string, tsSeconds int64) string {
	m := hmac.New(sha256.New, []byte(strconv.FormatInt(tsSeconds, 10)+"\n"+secret))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

type message struct {
	Timestamp string `json:"timestamp,omitempty"`
	Sign      string `json:"sign,omitempty"`
	MsgType   string `json:"msg_type"`
	Card      card   `json:"card"`
}

type card struct {
	Config   cardConfig `json:"config"`
	Header   header     `json:"header"`
	Elements []element  `json:"elements"`
}

type cardConfig struct {
	WideScreenMode bool `json:"wide_screen_mode"`
}

type header struct {
	Title    text   `json:"title"`
	Template string `json:"template"`
}

type text struct {
	Tag     string `json:"tag"`
	Content string `json:"content"`
}

type element struct {
	Tag     string `json:"tag"`
	Content string `json:"content"`
}

// answer covers both of Feishu's answer shapes: {"code","msg","data"} and
// the older {"StatusCode","StatusMessage"}.
type answer struct {
	Code          *int   `json:"code"`
	Msg           string `json:"msg"`
	StatusCode    *int   `json:"StatusCode"`
	StatusMessage string `json:"StatusMessage"`
}

// colour is the card header's template: red while anything fires at
// critical, orange for the rest firing, green when all is resolved.
func colour(n sdk.Notification) string {
	c := "green"
	for _, a := range n.Alerts {
		if a.State == sdk.StateResolved {
			continue
		}
		if a.Severity == sdk.SeverityCritical {
			return "red"
		}
		c = "orange"
	}
	return c
}

func (f *feishu) Notify(ctx context.Context, n sdk.Notification) (sdk.Result, error) {
	c, p, err := parse(n.Config)
	if err != nil {
		return sdk.Result{}, err
	}
	title, body := chat.Text(n, p, c.Keyword)
	msg := message{
		MsgType: "interactive",
		Card: card{
			Config:   cardConfig{WideScreenMode: true},
			Header:   header{Title: text{Tag: "plain_text", Content: title}, Template: colour(n)},
			Elements: []element{{Tag: "markdown", Content: render.Truncate(body, maxCard)}},
		},
	}
	if c.Secret != "" {
		ts := f.sender.Now().Unix()
		msg.Timestamp = strconv.FormatInt(ts, 10)
		msg.Sign = Sign(c.Secret, ts)
	}
	resp, res, err := f.sender.Post(ctx, c.Webhook, c.Common, p, c.Webhook, msg)
	if err != nil {
		return sdk.Result{}, err
	}
	if res != nil {
		return *res, nil
	}
	return f.result(c.Webhook, resp), nil
}

// result maps Feishu's answer, which carries its code in the body (with
// HTTP 200, or 4xx on newer gateways).
func (f *feishu) result(key string, resp *delivery.Response) sdk.Result {
	var a answer
	if err := json.Unmarshal(resp.Body, &a); err != nil || (a.Code == nil && a.StatusCode == nil) {
		if resp.Status != 200 {
			return delivery.StatusResult(resp, f.sender.Now())
		}
		return sdk.RetryResult(0, "bad_answer", "Feishu answered something else than its JSON: "+delivery.Snippet(resp.Body))
	}
	code, msg := 0, a.Msg
	switch {
	case a.Code != nil && *a.Code != 0:
		code = *a.Code
	case a.StatusCode != nil && *a.StatusCode != 0:
		code, msg = *a.StatusCode, a.StatusMessage
	case msg == "":
		msg = a.StatusMessage
	}
	scode := strconv.Itoa(code)
	switch {
	case code == 0 && resp.Status < 300:
		return sdk.Result{Outcome: sdk.Delivered, Code: scode, Message: msg}
	case code == codeFrequencyLimited,
		code == codeBadRequest && strings.Contains(strings.ToLower(msg), "too many request"),
		resp.Status == 429:
		wait := max(throttle, delivery.RetryAfter(resp.Header, f.sender.Now()))
		f.sender.Limiter.Block(key, f.sender.Now().Add(wait))
		return sdk.RetryResult(wait, scode, msg)
	case resp.Status >= 500:
		r := delivery.StatusResult(resp, f.sender.Now())
		r.Code, r.Message = scode, msg
		return r
	}
	return sdk.PermanentResult(scode, msg)
}
