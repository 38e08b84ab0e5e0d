package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// The alerts module: rules (/alert-rules), alerts (/alerts, their
// timelines, ack, resolve, stats), silences and notification channels.
// The engine that evaluates the rules and the dispatcher that sends the
// notifications run beside the API (package alert); the API reads and
// writes the same tables.
//
// Alerts are site data: every read of them is scoped (alert.DB builds the
// filter from the context), and one outside the caller's data scope
// answers 404 like a missing one. Rules and silences are configuration,
// but they decide what is evaluated and what pages, so a caller whose
// scope is limited may only write rules scoped to its own sites and
// silences that match only its sites.

// AlertStore serves the alert routes; *alert.DB implements it.
type AlertStore interface {
	ListRules(ctx context.Context, f alert.RuleFilter) ([]alert.Rule, int, error)
	Rule(ctx context.Context, id uuid.UUID) (alert.Rule, error)
	CreateRule(ctx context.Context, r alert.Rule, by string) (uuid.UUID, error)
	UpdateRule(ctx context.Context, id uuid.UUID, r alert.Rule, by string) error
	SetRuleEnabled(ctx context.Context, id uuid.UUID, enabled bool, by string) error
	DeleteRule(ctx context.Context, id uuid.UUID) error
	Preview(ctx context.Context, r alert.Rule, from, to time.Time) (alert.PreviewResult, error)

	ListAlerts(ctx context.Context, f alert.AlertFilter) ([]alert.Alert, int, error)
	AlertDetail(ctx context.Context, id int64) (alert.AlertDetail, error)
	Ack(ctx context.Context, id int64, by, comment string) error
	Resolve(ctx context.Context, id int64, by, comment string) error
	AlertStats(ctx context.Context, from, to time.Time) (alert.AlertCounts, error)

	ListSilences(ctx context.Context, state string, now time.Time) ([]alert.Silence, error)
	CreateSilence(ctx context.Context, s alert.Silence, by string, now time.Time) (alert.Silence, error)
	Silence(ctx context.Context, id uuid.UUID, now time.Time) (alert.Silence, error)
	ExpireSilence(ctx context.Context, id uuid.UUID) error

	ListWindows(ctx context.Context, now time.Time) ([]alert.MaintenanceWindow, error)
	Window(ctx context.Context, id uuid.UUID, now time.Time) (alert.MaintenanceWindow, error)
	CreateWindow(ctx context.Context, w alert.MaintenanceWindow, by string, now time.Time) (alert.MaintenanceWindow, error)
	UpdateWindow(ctx context.Context, id uuid.UUID, w alert.MaintenanceWindow, now time.Time) (alert.MaintenanceWindow, error)
	DeleteWindow(ctx context.Context, id uuid.UUID) error

	ListChannels(ctx context.Context) ([]alert.Channel, error)
	Channel(ctx context.Context, id uuid.UUID) (alert.Channel, error)
	SendConfig(ctx context.Context, id uuid.UUID) (alert.Channel, error)
	CreateChannel(ctx context.Context, in alert.ChannelInput, by string) (uuid.UUID, error)
	UpdateChannel(ctx context.Context, id uuid.UUID, in alert.ChannelInput) error
	DeleteChannel(ctx context.Context, id uuid.UUID) error
	RecordTest(ctx context.Context, t alert.TestDelivery) error
}

var _ AlertStore = (*alert.DB)(nil)

// The alert module's error codes.
const (
	CodeAlertNotFound       = "ALERT_NOT_FOUND"
	CodeAlertNotActive      = "ALERT_NOT_ACTIVE"
	CodeRuleNotFound        = "ALERT_RULE_NOT_FOUND"
	CodeRuleNameTaken       = "ALERT_RULE_NAME_TAKEN"
	CodeSilenceNotFound     = "SILENCE_NOT_FOUND"
	CodeChannelNotFound     = "NOTIFICATION_CHANNEL_NOT_FOUND"
	CodeChannelNameTaken    = "NOTIFICATION_CHANNEL_NAME_TAKEN"
	CodeChannelInUse        = "NOTIFICATION_CHANNEL_IN_USE"
	CodeNotifierUnavailable = "NOTIFIER_UNAVAILABLE"
	// FieldUnknownChannel: a rule names a channel that does not exist.
	FieldUnknownChannel = alert.FieldUnknownChannel
)

// alertError maps the alert package's errors; notFoundCode is the
// resource's own 404 code.
func alertError(err error, notFoundCode string) error {
	var v *alert.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &v):
		fields := make([]FieldError, len(v.Fields))
		for i, f := range v.Fields {
			fields[i] = FieldError{Field: f.Field, Code: f.Code, Params: f.Params}
		}
		return validationError(fields...)
	case errors.Is(err, alert.ErrNotFound):
		return newError(http.StatusNotFound, notFoundCode)
	case errors.Is(err, alert.ErrNotActive):
		return newError(http.StatusConflict, CodeAlertNotActive)
	case errors.Is(err, alert.ErrInUse):
		return newError(http.StatusConflict, CodeChannelInUse)
	case errors.Is(err, alert.ErrNameTaken):
		if notFoundCode == CodeChannelNotFound {
			return &Error{Status: http.StatusConflict, Code: CodeChannelNameTaken, Fields: []FieldError{{Field: "name", Code: FieldTaken}}}
		}
		return &Error{Status: http.StatusConflict, Code: CodeRuleNameTaken, Fields: []FieldError{{Field: "name", Code: FieldTaken}}}
	}
	return err
}

// scopeDenied is the 403 for a rule or silence beyond the caller's sites.
func scopeDenied(reason string) error {
	e := newError(http.StatusForbidden, CodeEscalation)
	e.Data = map[string]any{"reason": reason}
	return e
}

// withinSites reports whether a caller may write configuration that
// applies to sites: an unrestricted caller always; a limited one when
// sites is not empty (empty means every site) and all of them are its own.
func withinSites(r *http.Request, sites []string) bool {
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok || p.Scope.Unrestricted() {
		return true
	}
	if len(sites) == 0 {
		return false
	}
	for _, s := range sites {
		if !slices.Contains(p.Scope.Sites, s) {
			return false
		}
	}
	return true
}

func actorLabel(r *http.Request) string {
	p, _ := auth.PrincipalFrom(r.Context())
	return principalLabel(p)
}

type alertsResource struct{ a *API }

// Routes lists the alert module's routes.
func (h *alertsResource) Routes() []Route {
	const tag = "alerts"
	alertParams := []Param{
		{Name: "state", Description: "active (firing, unknown or suppressed; the default), firing, unknown, suppressed, resolved or all"},
		{Name: "severity", Description: "critical, warning or info"},
		{Name: "site", Description: "only this site"},
		{Name: "kind", Description: "vm, host, cluster, datastore, site or vcenter"},
		{Name: "entity", Description: "only this entity (source:moref; a site's name; a vCenter's source)"},
		{Name: "rule", Description: "only this rule's (id)"},
		{Name: "acked", Description: "true or false"},
		{Name: "late", Description: "true: only alerts whose firing was late (replayed from a backlog)"},
		{Name: "from", Description: "RFC 3339: fired at or after"}, {Name: "to", Description: "RFC 3339: fired before"},
		{Name: "q", Description: "search entity name, rule name and summary"},
		{Name: "sort", Description: "starts_at, ends_at, severity, state, site, rule, entity, updated_at, id (prefix - for descending); default newest first"},
	}
	alertParams = append(alertParams, pageParams...)
	out := []Route{
		{Method: "GET", Pattern: "/alerts", Access: auth.PermAlertRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "Alerts in the caller's data scope, active (the default) and history. Times are the samples' (event time); " +
				"created_at is when the aggregator learnt of the alert, and late marks one replayed from a site's backlog",
			Params: alertParams, Response: pageSchema(ref("Alert")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/alerts/stats", Access: auth.PermAlertRead, Handle: h.stats, Doc: Doc{Tag: tag,
			Summary: "Alert counts in the caller's data scope: active by state, severity, site and rule; fired, resolved, transitions, " +
				"late transitions and notifications by state over a period; mean time to resolve",
			Params:   []Param{{Name: "from", Description: "RFC 3339; default to - 24h"}, {Name: "to", Description: "RFC 3339; default now"}},
			Response: ref("AlertStats"), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/alerts/{id}", Access: auth.PermAlertRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "An alert with its timeline (every transition at its event time and arrival time, acknowledgements, notifications) " +
				"and its notifications with every delivery attempt",
			Response: ref("AlertDetail"), Errors: []int{401, 403, 404}, Codes: []string{CodeAlertNotFound}}},
		{Method: "POST", Pattern: "/alerts/{id}/ack", Access: auth.PermAlertWrite, Action: "alert.ack", Resource: "alert", Handle: h.ack, Doc: Doc{Tag: tag,
			Summary: "Acknowledge an active alert (by the caller, with an optional comment): it is no longer repeated",
			Body:    ref("AlertComment"), Response: ref("Alert"), Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeAlertNotFound, CodeAlertNotActive}}},
		{Method: "POST", Pattern: "/alerts/{id}/resolve", Access: auth.PermAlertWrite, Action: "alert.resolve", Resource: "alert", Handle: h.resolve, Doc: Doc{Tag: tag,
			Summary: "Resolve an active alert by hand; its channels get a resolved notice. If the condition still holds, a new alert follows",
			Body:    ref("AlertComment"), Response: ref("Alert"), Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeAlertNotFound, CodeAlertNotActive}}},
	}
	out = append(out, (&alertRulesResource{h.a}).Routes()...)
	out = append(out, (&alertConfigResource{h.a}).Routes()...)
	out = append(out, (&alertWindowsResource{h.a}).Routes()...)
	return out
}

func (h *alertsResource) list(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := alert.AlertFilter{
		State:    q.oneOf("state", "active", "firing", "unknown", "suppressed", "resolved", "all"),
		Severity: q.oneOf("severity", alert.SeverityCritical, alert.SeverityWarning, alert.SeverityInfo),
		Site:     q.str("site", 63),
		Kind:     q.oneOf("kind", alert.Kinds...),
		Entity:   q.str("entity", maxObjectID),
		Q:        q.str("q", 200),
		From:     q.time("from"),
		To:       q.time("to"),
		Acked:    q.boolean("acked"),
		Late:     q.boolean("late"),
	}
	if s := q.str("rule", 64); s != "" {
		id, err := uuid.Parse(s)
		if err != nil {
			q.fe.add("rule", FieldInvalidFormat, map[string]any{"format": "a rule id (UUID)"})
		}
		f.RuleID = &id
	}
	allowed := map[string]string{}
	for k := range alert.AlertSortFields {
		allowed[k] = k
	}
	for _, k := range q.sort(allowed) {
		f.Sort = append(f.Sort, alert.SortKey{Field: k.Field, Desc: k.Desc})
	}
	f.Page, f.PageSize = q.page()
	if err := q.err(); err != nil {
		return err
	}
	if len(f.Sort) == 0 {
		f.Sort = []alert.SortKey{{Field: "starts_at", Desc: true}}
	}
	items, total, err := h.a.alerts.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, pageOf[alert.Alert]{Items: items, Total: total, Page: f.Page, PageSize: f.PageSize})
	return nil
}

func pathAlertID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, newError(http.StatusNotFound, CodeAlertNotFound)
	}
	return id, nil
}

func (h *alertsResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAlertID(r)
	if err != nil {
		return err
	}
	d, err := h.a.alerts.AlertDetail(r.Context(), id)
	if err != nil {
		return alertError(err, CodeAlertNotFound)
	}
	writeData(w, r, http.StatusOK, d)
	return nil
}

// alertComment is the optional body of ack and resolve.
type alertComment struct {
	Comment *string `json:"comment"`
}

func (b *alertComment) validate(v *fieldErrors) {
	if b.Comment != nil {
		v.maxLen("comment", *b.Comment, 2000)
	}
}

// readComment reads the optional body of ack and resolve.
func readComment(r *http.Request) (string, error) {
	body, err := readJSON(r)
	if err != nil {
		return "", err
	}
	if len(body) == 0 {
		return "", nil
	}
	var c alertComment
	if err := decodeJSONBody(r, body, &c); err != nil {
		return "", err
	}
	return deref(c.Comment), nil
}

func (h *alertsResource) act(w http.ResponseWriter, r *http.Request, do func(ctx context.Context, id int64, by, comment string) error) error {
	id, err := pathAlertID(r)
	if err != nil {
		return err
	}
	comment, err := readComment(r)
	if err != nil {
		return err
	}
	if err := do(r.Context(), id, actorLabel(r), comment); err != nil {
		return alertError(err, CodeAlertNotFound)
	}
	d, err := h.a.alerts.AlertDetail(r.Context(), id)
	if err != nil {
		return alertError(err, CodeAlertNotFound)
	}
	writeData(w, r, http.StatusOK, d.Alert)
	return nil
}

func (h *alertsResource) ack(w http.ResponseWriter, r *http.Request) error {
	return h.act(w, r, h.a.alerts.Ack)
}

func (h *alertsResource) resolve(w http.ResponseWriter, r *http.Request) error {
	return h.act(w, r, h.a.alerts.Resolve)
}

func (h *alertsResource) stats(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	to := q.time("to")
	from := q.time("from")
	if err := q.err(); err != nil {
		return err
	}
	if to.IsZero() {
		to = h.a.now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-24 * time.Hour)
	}
	if !to.After(from) {
		return validationError(FieldError{Field: "to", Code: FieldOutOfRange, Params: map[string]any{"min": "from", "max": "∞"}})
	}
	st, err := h.a.alerts.AlertStats(r.Context(), from, to)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, st)
	return nil
}
