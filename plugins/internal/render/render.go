// Package render turns a notification into localized text for the shipped
// notifier plugins: a subject line, Markdown for the chat robots, and the
// message catalog the email templates use. Locales: en (the fallback),
// zh-CN and ja-JP.
package render

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // plugins may run where the host has no zoneinfo

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Locale is one language's message catalog.
type Locale struct {
	Tag  string
	msgs map[string]string
}

var catalogs = map[string]map[string]string{
	"en": {
		"firing":     "Firing",
		"resolved":   "Resolved",
		"critical":   "Critical",
		"warning":    "Warning",
		"info":       "Info",
		"alerts":     "%d alerts",
		"counts":     "%d firing, %d resolved",
		"entity":     "Entity",
		"site":       "Site",
		"value":      "Value",
		"threshold":  "Threshold",
		"rule":       "Rule",
		"started":    "Started",
		"ended":      "Ended",
		"omitted":    "%d more alerts are not shown.",
		"open":       "Open in vmpulse",
		"all_alerts": "All alerts",
		"footer":     "Sent by vmpulse.",
		"digest":     "Digest",
	},
	"zh-CN": {
		"firing":     "告警中",
		"resolved":   "已恢复",
		"critical":   "严重",
		"warning":    "警告",
		"info":       "提示",
		"alerts":     "%d 条告警",
		"counts":     "%d 条告警中，%d 条已恢复",
		"entity":     "对象",
		"site":       "站点",
		"value":      "当前值",
		"threshold":  "阈值",
		"rule":       "规则",
		"started":    "开始时间",
		"ended":      "恢复时间",
		"omitted":    "另有 %d 条告警未列出。",
		"open":       "在 vmpulse 中查看",
		"all_alerts": "全部告警",
		"footer":     "由 vmpulse 发送。",
		"digest":     "汇总",
	},
	"ja-JP": {
		"firing":     "発生中",
		"resolved":   "解決済み",
		"critical":   "重大",
		"warning":    "警告",
		"info":       "情報",
		"alerts":     "%d 件のアラート",
		"counts":     "発生中 %d 件、解決済み %d 件",
		"entity":     "対象",
		"site":       "サイト",
		"value":      "値",
		"threshold":  "しきい値",
		"rule":       "ルール",
		"started":    "開始",
		"ended":      "終了",
		"omitted":    "ほか %d 件のアラートは省略されています。",
		"open":       "vmpulse で開く",
		"all_alerts": "すべてのアラート",
		"footer":     "vmpulse から送信されました。",
		"digest":     "まとめ",
	},
}

// Lookup returns the catalog for a BCP 47 tag: an exact match, else the
// language alone ("zh-Hans" → zh-CN, "ja" → ja-JP), else English.
func Lookup(tag string) Locale {
	if m, ok := catalogs[tag]; ok {
		return Locale{Tag: tag, msgs: m}
	}
	lang, _, _ := strings.Cut(strings.ToLower(strings.ReplaceAll(tag, "_", "-")), "-")
	switch lang {
	case "zh":
		return Locale{Tag: "zh-CN", msgs: catalogs["zh-CN"]}
	case "ja":
		return Locale{Tag: "ja-JP", msgs: catalogs["ja-JP"]}
	}
	return Locale{Tag: "en", msgs: catalogs["en"]}
}

// T returns the message for key, formatted with args.
func (l Locale) T(key string, args ...any) string {
	m, ok := l.msgs[key]
	if !ok {
		m = catalogs["en"][key]
	}
	if m == "" {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(m, args...)
	}
	return m
}

// Counts returns how many alerts of n are firing and resolved.
func Counts(n sdk.Notification) (firing, resolved int) {
	for _, a := range n.Alerts {
		if a.State == sdk.StateResolved {
			resolved++
		} else {
			firing++
		}
	}
	return firing, resolved
}

// Subject is a one-line summary: the alert for one, counts for a digest.
func Subject(l Locale, n sdk.Notification) string {
	if len(n.Alerts) == 1 && !n.Digest {
		a := n.Alerts[0]
		s := fmt.Sprintf("[%s] %s: %s", l.T(state(a)), l.T(severity(a)), a.Summary)
		if a.Entity.Name != "" && !strings.Contains(a.Summary, a.Entity.Name) {
			s += " — " + a.Entity.Name
		}
		return s
	}
	f, r := Counts(n)
	return fmt.Sprintf("[vmpulse] %s: %s", l.T("alerts", len(n.Alerts)+n.Omitted), l.T("counts", f, r))
}

func state(a sdk.Alert) string {
	if a.State == sdk.StateResolved {
		return "resolved"
	}
	return "firing"
}

func severity(a sdk.Alert) string {
	switch a.Severity {
	case sdk.SeverityCritical, sdk.SeverityWarning, sdk.SeverityInfo:
		return a.Severity
	}
	return sdk.SeverityWarning
}

// StateLabel and SeverityLabel are the localized words for an alert's
// state and severity.
func (l Locale) StateLabel(a sdk.Alert) string    { return l.T(state(a)) }
func (l Locale) SeverityLabel(a sdk.Alert) string { return l.T(severity(a)) }

// Time formats t in loc (UTC when nil) as "2006-01-02 15:04:05 MST".
func Time(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format("2006-01-02 15:04:05 MST")
}

// Value formats an alert's value with its unit.
func Value(v float64, unit string) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if len(s) > 12 {
		s = strconv.FormatFloat(v, 'g', 6, 64)
	}
	if unit == "" {
		return s
	}
	if unit == "%" {
		return s + "%"
	}
	return s + " " + unit
}

// SortedLabels returns an alert's labels as "k=v", sorted.
func SortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Markdown renders n for the chat robots: a title (plain text) and a body
// in the Markdown subset that DingTalk, WeCom and Feishu cards all render
// (bold, links, lists); the body does not repeat the title. maxAlerts caps
// the alerts listed; the rest are counted.
func Markdown(l Locale, n sdk.Notification, loc *time.Location, maxAlerts int) (title, body string) {
	title = Subject(l, n)
	var b strings.Builder
	shown := n.Alerts
	if maxAlerts > 0 && len(shown) > maxAlerts {
		shown = shown[:maxAlerts]
	}
	for i, a := range shown {
		if i > 0 {
			b.WriteString("\n---\n\n")
		}
		fmt.Fprintf(&b, "**[%s] %s** %s\n\n", l.StateLabel(a), l.SeverityLabel(a), escapeMD(a.Summary))
		if a.Entity.Name != "" || a.Entity.ID != "" {
			fmt.Fprintf(&b, "- %s: %s\n", l.T("entity"), escapeMD(entity(a.Entity)))
		}
		if a.Site != "" {
			fmt.Fprintf(&b, "- %s: %s\n", l.T("site"), escapeMD(a.Site))
		}
		if a.Rule != "" {
			fmt.Fprintf(&b, "- %s: %s\n", l.T("rule"), escapeMD(a.Rule))
		}
		if a.Value != 0 || a.Threshold != 0 {
			fmt.Fprintf(&b, "- %s: %s (%s %s)\n", l.T("value"), Value(a.Value, a.Unit), l.T("threshold"), Value(a.Threshold, a.Unit))
		}
		fmt.Fprintf(&b, "- %s: %s\n", l.T("started"), Time(a.StartsAt, loc))
		if !a.EndsAt.IsZero() {
			fmt.Fprintf(&b, "- %s: %s\n", l.T("ended"), Time(a.EndsAt, loc))
		}
		if a.Description != "" {
			fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(a.Description))
		}
		if a.URL != "" {
			fmt.Fprintf(&b, "\n[%s](%s)\n", l.T("open"), a.URL)
		}
	}
	if more := len(n.Alerts) - len(shown) + n.Omitted; more > 0 {
		fmt.Fprintf(&b, "\n%s\n", l.T("omitted", more))
	}
	if n.ConsoleURL != "" && (n.Digest || len(n.Alerts) > 1) {
		fmt.Fprintf(&b, "\n[%s](%s)\n", l.T("all_alerts"), n.ConsoleURL)
	}
	return title, b.String()
}

func entity(e sdk.Entity) string {
	switch {
	case e.Name != "" && e.ID != "":
		return fmt.Sprintf("%s %s (%s)", e.Kind, e.Name, e.ID)
	case e.Name != "":
		return e.Kind + " " + e.Name
	}
	return e.Kind + " " + e.ID
}

// Entity formats an entity for text: "vm web-1 (vm-42)".
func Entity(e sdk.Entity) string { return entity(e) }

// EscapeMarkdown makes text from an alert safe on one Markdown line. The
// robots' Markdown dialects have no reliable escapes (a backslash shows
// as is), so markup in alert text is left alone; only line breaks, which
// would end the list item or the heading, are folded.
func EscapeMarkdown(s string) string { return escapeMD(s) }

func escapeMD(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\r", "")), " ")
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "\n…"
	cut := n - len(mark)
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Location loads an IANA time zone name; "" is UTC.
func Location(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}
