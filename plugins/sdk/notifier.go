package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Notifier delivers notifications to one kind of destination (a webhook,
// an SMTP server, a chat robot). One plugin process serves every channel of
// its kind, so the channel's config travels with each call.
//
// Implementations must be safe for concurrent use: the host makes up to its
// per-plugin concurrency limit of calls at once. Every method gets a
// context carrying the host's per-call deadline and must return when it
// ends.
type Notifier interface {
	// Validate checks a channel's config (a JSON object) without sending
	// anything. It returns nil when the config is usable, a
	// *ValidationError listing every bad field when it is not, and any
	// other error when it could not tell.
	Validate(ctx context.Context, config json.RawMessage) error

	// Notify delivers n. The Result says what the provider did with it:
	// delivered, retry (with the provider's requested delay), or permanent
	// failure, each with the provider's own code and message. An error
	// means the call itself failed (a bad config that Validate would have
	// refused, a broken plugin, the context ended); the host retries such
	// a notification later.
	Notify(ctx context.Context, n Notification) (Result, error)
}

// Notification is one message to one channel. It carries one alert, or many
// when the host batched them into a digest (an alert storm, or a site's
// backlog of late transitions).
type Notification struct {
	// ID is stable across retries of the same notification; providers
	// that support idempotency keys should use it.
	ID string
	// Channel is the name of the channel the operator configured.
	Channel string
	// Config is the channel's config, a JSON object that Validate accepted.
	Config json.RawMessage
	// Locale is the channel's language as a BCP 47 tag: "en", "zh-CN",
	// "ja-JP". Plugins fall back to "en" for one they do not know.
	Locale string
	// Digest is true when Alerts were batched.
	Digest bool
	// Alerts is never empty.
	Alerts []Alert
	// Omitted counts alerts the host left out of a digest to keep it
	// readable; the message should say so.
	Omitted int
	// Attempt is 1 on the first try of this ID.
	Attempt int
	// CreatedAt is when the host queued the notification.
	CreatedAt time.Time
	// ConsoleURL links to the console's alert list.
	ConsoleURL string
}

// Alert states.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Alert severities.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Alert is one alert's transition as the alert engine recorded it.
type Alert struct {
	ID          string
	Rule        string
	Severity    string // SeverityCritical, SeverityWarning, SeverityInfo
	State       string // StateFiring or StateResolved
	Entity      Entity
	Site        string
	Summary     string
	Description string
	Value       float64
	Threshold   float64
	Unit        string
	StartsAt    time.Time
	EndsAt      time.Time // zero while firing
	Labels      map[string]string
	URL         string
}

// Entity is what an alert or a sample is about.
type Entity struct {
	Kind string // "vm", "host", "datastore", "cluster", "vcenter", ...
	ID   string // the managed object reference, or the plugin's own ID
	Name string
}

// Outcome is what became of a delivery.
type Outcome int

// The outcomes of Notify.
const (
	// Delivered: the provider accepted the message.
	Delivered Outcome = iota + 1
	// Retry: a transient failure (rate limit, 5xx, a network error); try
	// again, not before Result.RetryAfter when it is set.
	Retry
	// Permanent: the same request will never succeed (bad signature,
	// missing keyword, unknown recipient); an operator must act.
	Permanent
)

// String returns "delivered", "retry" or "permanent".
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is the outcome of a Notify call as the provider reported it.
type Result struct {
	Outcome Outcome
	// RetryAfter is the delay the provider asked for (Retry-After, a
	// rate-limit window); zero leaves the delay to the host's backoff.
	RetryAfter time.Duration
	// Code and Message are the provider's own: an HTTP status ("503"), a
	// chat service's errcode ("310000") or an SMTP reply code ("550"),
	// and its text.
	Code    string
	Message string
	// ProviderID is the provider's ID for the delivered message, if any.
	ProviderID string
}

// DeliveredResult returns a Delivered result.
func DeliveredResult(providerID string) Result {
	return Result{Outcome: Delivered, ProviderID: providerID}
}

// RetryResult returns a Retry result with the provider's code and message.
func RetryResult(after time.Duration, code, msg string) Result {
	return Result{Outcome: Retry, RetryAfter: after, Code: code, Message: msg}
}

// PermanentResult returns a Permanent result with the provider's code and
// message.
func PermanentResult(code, msg string) Result {
	return Result{Outcome: Permanent, Code: code, Message: msg}
}

// FieldError is one problem with one field of a config.
type FieldError struct {
	// Field is a dotted path into the config: "url", "smtp.port",
	// "headers.X-Token".
	Field   string
	Message string
}

// ValidationError lists every problem Validate found in a config. It
// crosses the plugin boundary intact: the host's Validate returns a
// *ValidationError too.
type ValidationError struct {
	Fields []FieldError
}

// Error joins the field errors.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid config: " + strings.Join(parts, "; ")
}

// Add records a problem with field.
func (e *ValidationError) Add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns e when it holds a problem, else nil, so that a Validate can
// end with `return verr.Err()`.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}
