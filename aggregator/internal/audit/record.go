// Package audit is vmpulse's operation log and login log.
//
// The operation log is tamper-evident: records carry a contiguous sequence
// number and a SHA-256 hash over their fields and the previous record's
// hash, so editing, deleting or reordering rows is detected by Verify.
// Records are appended through a Writer, asynchronously, from the REST API
// and (later) from vCenter events forwarded by agents.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Results of an audited operation.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultDenied  = "denied"
)

// Record is one entry of the operation log.
type Record struct {
	// Seq is assigned when the record is stored.
	Seq  int64     `json:"id"`
	Time time.Time `json:"time"`
	// Source is where the record came from: "api", "vcenter", "system".
	Source string `json:"source"`
	// ActorType is "user", "api_token", "anonymous", "system" or "vcenter".
	ActorType    string `json:"actor_type"`
	ActorID      string `json:"actor_id"`
	ActorName    string `json:"actor_name"`
	Action       string `json:"action"`
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id"`
	// Summary is a JSON document describing the change, secrets redacted
	// (see Redact).
	Summary   json.RawMessage `json:"summary"`
	Result    string          `json:"result"`
	Status    int             `json:"status"`
	IP        string          `json:"ip"`
	UserAgent string          `json:"user_agent"`
	RequestID string          `json:"request_id"`
	LatencyUS int64           `json:"latency_us"`
	PrevHash  []byte          `json:"-"`
	Hash      []byte          `json:"hash"`
}

// normalize makes a record storable and its hash reproducible from what the
// database returns: UTC, microsecond precision, a valid JSON summary, and
// every text field made safe by SanitizeText (so the hash covers exactly
// the text stored). It reports whether any text had to be escaped or cut.
func (r *Record) normalize() (changed bool) {
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	summary := sanitizeSummary(r.Summary)
	changed = len(r.Summary) > 0 && string(summary) != string(r.Summary)
	r.Summary = summary
	for _, f := range []struct {
		s   *string
		max int
	}{
		{&r.Source, maxSource}, {&r.ActorType, 0}, {&r.ActorID, 0}, {&r.ActorName, 0}, {&r.Action, 0},
		{&r.ResourceType, 0}, {&r.ResourceID, 0}, {&r.Result, 0}, {&r.IP, 0}, {&r.UserAgent, MaxUserAgent}, {&r.RequestID, 0},
	} {
		if v := SanitizeText(*f.s, f.max); v != *f.s {
			*f.s, changed = v, true
		}
	}
	return changed
}

// chainHash is the record's hash given the previous one. Each field is
// length-prefixed so no two different records encode the same.
func chainHash(prev []byte, r *Record) []byte {
	h := sha256.New()
	var n [4]byte
	put := func(s string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(string(prev))
	put(strconv.FormatInt(r.Seq, 10))
	put(r.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))
	for _, s := range []string{r.Source, r.ActorType, r.ActorID, r.ActorName, r.Action, r.ResourceType, r.ResourceID,
		string(r.Summary), r.Result, strconv.Itoa(r.Status), r.IP, r.UserAgent, r.RequestID, strconv.FormatInt(r.LatencyUS, 10)} {
		put(s)
	}
	return h.Sum(nil)
}

// redacted replaces secret values in summaries.
const redacted = "[REDACTED]"

// Redact returns v (a decoded JSON value) with the value of every object key
// that looks like a secret (password, token, secret, key, authorization)
// replaced by "[REDACTED]", at any depth.
func Redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if secretKey(k) {
				out[k] = redacted
			} else {
				out[k] = Redact(val)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = Redact(val)
		}
		return out
	default:
		return v
	}
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"password", "token", "secret", "authorization", "private_key", "api_key", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}
