package alert

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Entity kinds a rule can apply to.
const (
	KindVM        = "vm"
	KindHost      = "host"
	KindCluster   = "cluster"
	KindDatastore = "datastore"
	KindSite      = "site"
	// KindVCenter is a vCenter/ESXi endpoint an agent polls, by its source
	// (as in the samples' series keys); its state comes from the agents'
	// heartbeats.
	KindVCenter = "vcenter"
)

// Kinds lists the entity kinds rules apply to.
var Kinds = []string{KindVM, KindHost, KindCluster, KindDatastore, KindSite, KindVCenter}

// Severities.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Aggregations of a metric over a window.
const (
	AggAvg  = "avg"
	AggMin  = "min"
	AggMax  = "max"
	AggLast = "last"
)

// Condition set combinators.
const (
	MatchAll = "all" // every condition holds (AND)
	MatchAny = "any" // at least one holds (OR)
)

// Limits of a rule.
const (
	MaxConditions = 10
	MaxWindow     = 24 * time.Hour
	MaxFor        = 7 * 24 * time.Hour
	MaxScopeItems = 500
	MaxLabels     = 50
)

// Duration is a time.Duration that reads and writes "5m", "1h30m" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string ("5m").
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(FormatDuration(time.Duration(d)))
}

// UnmarshalJSON reads "5m", "90s", "1h30m" (or 0).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"5m\"")
	}
	if s == "" || s == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, 1h)", s)
	}
	*d = Duration(v)
	return nil
}

// FormatDuration writes d compactly: "5m", "1h30m", "20s", "0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Condition compares Agg of Metric over Window with Threshold.
type Condition struct {
	// Metric is a counter name (cpu.usage.average) of the entity as a whole
	// (instance ""), or a state metric of the default pack (agent.connected).
	Metric string `json:"metric"`
	// Agg is avg, min, max or last (default last; last ignores Window).
	Agg    string   `json:"agg"`
	Window Duration `json:"window"`
	// Op is >, >=, <, <=, == or !=.
	Op        string  `json:"op"`
	Threshold float64 `json:"threshold"`
	// ClearThreshold, when set, is the threshold a firing instance must
	// cross back to resolve (hysteresis): for > and >= it is at most
	// Threshold, for < and <= at least.
	ClearThreshold *float64 `json:"clear_threshold,omitempty"`
}

// Scope limits a rule to some entities. Every non-empty list must match (a
// list matches when any of its items does); all empty means every entity
// of the rule's kind.
type Scope struct {
	Sites []string `json:"sites,omitempty"`
	// VMGroups are VM group ids (VM rules only).
	VMGroups []string `json:"vm_groups,omitempty"`
	// Clusters are cluster ids (source:moref): the cluster itself, its
	// hosts and their VMs.
	Clusters []string `json:"clusters,omitempty"`
	// Hosts are host ids (source:moref): the host itself and its VMs.
	Hosts []string `json:"hosts,omitempty"`
	// Tags are vSphere tags ("category/name") the entity carries.
	Tags []string `json:"tags,omitempty"`
	// Entities are explicit entity ids (source:moref; a site's name for
	// site rules; a vCenter's source for vcenter rules).
	Entities []string `json:"entities,omitempty"`
}

// Empty reports whether the scope is every entity.
func (s Scope) Empty() bool {
	return len(s.Sites)+len(s.VMGroups)+len(s.Clusters)+len(s.Hosts)+len(s.Tags)+len(s.Entities) == 0
}

// Rule is an alert rule as the API reads and writes it.
type Rule struct {
	ID          uuid.UUID `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	EntityKind  string    `json:"entity_kind"`
	Severity    string    `json:"severity"`
	Enabled     bool      `json:"enabled"`
	// Match is all (AND, the default) or any (OR).
	Match         string            `json:"match"`
	Conditions    []Condition       `json:"conditions"`
	For           Duration          `json:"for"`
	KeepFiringFor Duration          `json:"keep_firing_for"`
	Scope         Scope             `json:"scope"`
	Labels        map[string]string `json:"labels"`
	// Annotations are templates: {{entity}}, {{entity_id}}, {{site}},
	// {{rule}}, {{value}}, {{threshold}}, {{unit}}, {{severity}} and
	// {{labels.NAME}} are replaced.
	Annotations map[string]string `json:"annotations"`
	// Channels are notification channel ids.
	Channels []uuid.UUID `json:"channels"`
	// RepeatInterval re-sends a firing, unacknowledged alert; 0 never.
	RepeatInterval Duration `json:"repeat_interval"`
	// GroupBy groups the rule's notifications per channel: "site", or
	// "site" and "cluster"; the notifications of one group due together
	// go out as one message. Empty: one message per alert.
	GroupBy []string `json:"group_by"`
	// GroupWait holds a group's firing notifications this long so that
	// the alerts of one cause arrive together (at most 10m). Resolved
	// notices are never held.
	GroupWait Duration `json:"group_wait"`
	// Builtin names the default-pack entry the rule came from.
	Builtin   string    `json:"builtin"`
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	CreatedBy string    `json:"created_by"`
	UpdatedBy string    `json:"updated_by"`
}

// Field error codes (the API's).
const (
	FieldRequired       = "required"
	FieldInvalidValue   = "invalid_value"
	FieldInvalidFormat  = "invalid_format"
	FieldOutOfRange     = "out_of_range"
	FieldTooLong        = "too_long"
	FieldUnknownChannel = "unknown_channel"
)

// FieldError is one invalid field of a rule, silence or channel: a JSON path
// and a code of the API's.
type FieldError struct {
	Field  string
	Code   string
	Params map[string]any
}

// ValidationError lists every invalid field.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Code
	}
	return "alert: invalid: " + strings.Join(parts, "; ")
}

func (e *ValidationError) add(field, code string, params map[string]any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Code: code, Params: params})
}

func (e *ValidationError) err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

var (
	metricRE   = regexp.MustCompile(`^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){1,3}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	siteRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

// Operators.
var operators = []string{">", ">=", "<", "<=", "==", "!="}

// Normalize fills a rule's defaults (match all, agg last, enabled as given)
// and sorts its lists, so that equal rules compare equal.
func (r *Rule) Normalize() {
	if r.Match == "" {
		r.Match = MatchAll
	}
	for i := range r.Conditions {
		if r.Conditions[i].Agg == "" {
			r.Conditions[i].Agg = AggLast
		}
	}
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	if r.Annotations == nil {
		r.Annotations = map[string]string{}
	}
	if r.Channels == nil {
		r.Channels = []uuid.UUID{}
	}
	if r.GroupBy == nil {
		r.GroupBy = []string{}
	}
}

// GroupByFields are the fields a rule's notifications can be grouped by.
var GroupByFields = []string{"site", "cluster"}

// Validate checks a rule (after Normalize) and returns a *ValidationError
// naming every bad field.
func (r *Rule) Validate() error {
	v := &ValidationError{}
	switch {
	case r.Name == "":
		v.add("name", FieldRequired, nil)
	case utf8.RuneCountInString(r.Name) > 128:
		v.add("name", FieldTooLong, map[string]any{"max": 128})
	}
	if utf8.RuneCountInString(r.Description) > 2000 {
		v.add("description", FieldTooLong, map[string]any{"max": 2000})
	}
	if r.EntityKind == "" {
		v.add("entity_kind", FieldRequired, nil)
	} else if !slices.Contains(Kinds, r.EntityKind) {
		v.add("entity_kind", FieldInvalidValue, map[string]any{"allowed": strings.Join(Kinds, ", ")})
	}
	switch r.Severity {
	case "":
		v.add("severity", FieldRequired, nil)
	case SeverityCritical, SeverityWarning, SeverityInfo:
	default:
		v.add("severity", FieldInvalidValue, map[string]any{"allowed": "critical, warning, info"})
	}
	if r.Match != MatchAll && r.Match != MatchAny {
		v.add("match", FieldInvalidValue, map[string]any{"allowed": "all, any"})
	}
	switch n := len(r.Conditions); {
	case n == 0:
		v.add("conditions", FieldRequired, nil)
	case n > MaxConditions:
		v.add("conditions", FieldOutOfRange, map[string]any{"min": 1, "max": MaxConditions})
	}
	for i := range r.Conditions {
		validateCondition(v, fmt.Sprintf("conditions[%d]", i), &r.Conditions[i])
	}
	durationRange(v, "for", time.Duration(r.For), MaxFor)
	durationRange(v, "keep_firing_for", time.Duration(r.KeepFiringFor), MaxFor)
	if d := time.Duration(r.RepeatInterval); d != 0 && (d < time.Minute || d > 30*24*time.Hour) {
		v.add("repeat_interval", FieldOutOfRange, map[string]any{"min": "1m", "max": "720h"})
	}
	validateMirror(v, r)
	for i, g := range r.GroupBy {
		if !slices.Contains(GroupByFields, g) || slices.Index(r.GroupBy, g) != i {
			v.add(fmt.Sprintf("group_by[%d]", i), FieldInvalidValue, map[string]any{"allowed": "site, cluster (each once)"})
		}
	}
	if len(r.GroupBy) > 0 && !slices.Contains(r.GroupBy, "site") {
		v.add("group_by", FieldInvalidValue, map[string]any{"allowed": "[site] or [site, cluster]"})
	}
	if d := time.Duration(r.GroupWait); d < 0 || d > 10*time.Minute {
		v.add("group_wait", FieldOutOfRange, map[string]any{"min": "0s", "max": "10m"})
	} else if d > 0 && len(r.GroupBy) == 0 {
		v.add("group_wait", FieldInvalidValue, map[string]any{"allowed": "0s without group_by"})
	}
	validateScope(v, r.EntityKind, &r.Scope)
	validateMap(v, "labels", r.Labels, 255)
	validateMap(v, "annotations", r.Annotations, 4000)
	if len(r.Channels) > 20 {
		v.add("channels", FieldOutOfRange, map[string]any{"min": 0, "max": 20})
	}
	for i, c := range r.Channels {
		if c == uuid.Nil {
			v.add(fmt.Sprintf("channels[%d]", i), FieldInvalidFormat, map[string]any{"format": "a channel id (UUID)"})
		}
	}
	return v.err()
}

func durationRange(v *ValidationError, field string, d, max time.Duration) {
	if d < 0 || d > max {
		v.add(field, FieldOutOfRange, map[string]any{"min": "0s", "max": FormatDuration(max)})
	}
}

func validateCondition(v *ValidationError, path string, c *Condition) {
	switch {
	case c.Metric == "":
		v.add(path+".metric", FieldRequired, nil)
	case !metricRE.MatchString(c.Metric):
		v.add(path+".metric", FieldInvalidFormat, map[string]any{"format": "group.counter.rollup, e.g. cpu.usage.average"})
	}
	switch c.Agg {
	case AggAvg, AggMin, AggMax:
		if c.Window <= 0 {
			v.add(path+".window", FieldRequired, nil)
		}
	case AggLast:
	default:
		v.add(path+".agg", FieldInvalidValue, map[string]any{"allowed": "avg, min, max, last"})
	}
	durationRange(v, path+".window", time.Duration(c.Window), MaxWindow)
	if c.Op == "" {
		v.add(path+".op", FieldRequired, nil)
	} else if !slices.Contains(operators, c.Op) {
		v.add(path+".op", FieldInvalidValue, map[string]any{"allowed": strings.Join(operators, " ")})
	}
	if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
		v.add(path+".threshold", FieldInvalidValue, map[string]any{"allowed": "a finite number"})
	}
	if c.ClearThreshold != nil {
		ct := *c.ClearThreshold
		ok := true
		switch c.Op {
		case ">", ">=":
			ok = ct <= c.Threshold
		case "<", "<=":
			ok = ct >= c.Threshold
		case "==", "!=":
			ok = false
		}
		if !ok || math.IsNaN(ct) || math.IsInf(ct, 0) {
			v.add(path+".clear_threshold", FieldOutOfRange, map[string]any{"min": "-∞ (≤ threshold for > and >=)", "max": "∞ (≥ threshold for < and <=; none for == and !=)"})
		}
	}
}

func validateScope(v *ValidationError, kind string, s *Scope) {
	lists := []struct {
		field string
		items []string
		check func(string) bool
		kinds []string // kinds the list applies to; nil: all
	}{
		{"scope.sites", s.Sites, siteRE.MatchString, nil},
		{"scope.vm_groups", s.VMGroups, func(x string) bool { _, err := uuid.Parse(x); return err == nil }, []string{KindVM}},
		{"scope.clusters", s.Clusters, isObjectID, []string{KindVM, KindHost, KindCluster}},
		{"scope.hosts", s.Hosts, isObjectID, []string{KindVM, KindHost}},
		{"scope.tags", s.Tags, func(x string) bool { return x != "" && utf8.RuneCountInString(x) <= 255 }, []string{KindVM, KindHost, KindCluster, KindDatastore}},
		{"scope.entities", s.Entities, func(x string) bool {
			switch kind {
			case KindSite:
				return siteRE.MatchString(x)
			case KindVCenter:
				return x != "" && len(x) <= 255 && utf8.ValidString(x)
			}
			return isObjectID(x)
		}, nil},
	}
	for _, l := range lists {
		if len(l.items) == 0 {
			continue
		}
		if l.kinds != nil && kind != "" && !slices.Contains(l.kinds, kind) {
			v.add(l.field, FieldInvalidValue, map[string]any{"allowed": "not for " + kind + " rules"})
			continue
		}
		if len(l.items) > MaxScopeItems {
			v.add(l.field, FieldOutOfRange, map[string]any{"min": 0, "max": MaxScopeItems})
			continue
		}
		for i, x := range l.items {
			if !l.check(x) {
				v.add(l.field+"["+strconv.Itoa(i)+"]", FieldInvalidFormat, map[string]any{"format": scopeFormat(l.field)})
			}
		}
	}
}

func scopeFormat(field string) string {
	switch field {
	case "scope.sites":
		return "a site name"
	case "scope.vm_groups":
		return "a VM group id (UUID)"
	case "scope.tags":
		return "category/name"
	}
	if field == "scope.entities" {
		return "source:moref (a site's name for site rules, a vCenter's source for vcenter rules)"
	}
	return "source:moref"
}

func validateMap(v *ValidationError, field string, m map[string]string, maxValue int) {
	if len(m) > MaxLabels {
		v.add(field, FieldOutOfRange, map[string]any{"min": 0, "max": MaxLabels})
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !labelKeyRE.MatchString(k) {
			v.add(field+"."+k, FieldInvalidFormat, map[string]any{"format": "a letter or _, then letters, digits or _ (at most 63)"})
		}
		if utf8.RuneCountInString(m[k]) > maxValue {
			v.add(field+"."+k, FieldTooLong, map[string]any{"max": maxValue})
		}
	}
}

// isObjectID reports whether s is source:moref.
func isObjectID(s string) bool {
	i := strings.LastIndexByte(s, ':')
	return i > 0 && i < len(s)-1 && len(s) <= 512
}

// compare applies op.
func compare(op string, v, t float64) bool {
	switch op {
	case ">":
		return v > t
	case ">=":
		return v >= t
	case "<":
		return v < t
	case "<=":
		return v <= t
	case "==":
		return v == t
	case "!=":
		return v != t
	}
	return false
}
