package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

type alertRulesResource struct{ a *API }

// Routes lists the rule routes.
func (h *alertRulesResource) Routes() []Route {
	const tag = "alerts"
	rule := ref("AlertRule")
	codes := []string{CodeRuleNotFound}
	return []Route{
		{Method: "GET", Pattern: "/alert-rules", Access: auth.PermAlertRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "List the alert rules visible in the caller's data scope, by name: a rule naming nothing of any site (every entity, or tags only) is visible to all; " +
				"one naming sites, VM groups, hosts, clusters or entities only when each lies within the scope",
			Params: append([]Param{{Name: "kind", Description: "vm, host, cluster, datastore, site or vcenter"}, {Name: "severity", Description: "critical, warning or info"},
				{Name: "enabled", Description: "true or false"}, {Name: "q", Description: "search name and description"}}, pageParams...),
			Response: pageSchema(rule), Errors: []int{401, 403, 422}}},
		{Method: "POST", Pattern: "/alert-rules", Access: auth.PermAlertWrite, Action: "alert_rule.create", Resource: "alert_rule", Handle: h.create, Doc: Doc{Tag: tag,
			Summary: "Create a rule: threshold conditions (metric, aggregation over a window, operator, threshold, optional clear threshold) " +
				"combined with all/any, for, keep_firing_for, scope, severity, labels, annotation templates, channels, repeat interval. " +
				"Percent metrics are compared in percent. A caller whose data scope is limited must confine the rule by scope.sites to its own sites and be able to read it back " +
				"(hosts, clusters and entities of its sites); otherwise 403 AUTH_ESCALATION_DENIED names the lists at fault (scope_fields) and nothing is stored. " +
				"Rule names are unique across every site",
			Body: ref("AlertRuleInput"), Response: rule, Status: http.StatusCreated, Errors: []int{401, 403, 409, 422},
			Codes: []string{CodeRuleNameTaken, CodeEscalation}}},
		{Method: "POST", Pattern: "/alert-rules/preview", Access: auth.PermAlertRead, Query: true, Handle: h.preview,
			Doc: Doc{Tag: tag, Summary: "Evaluate a draft rule against the stored samples of the last hours (entities in the caller's data scope) " +
				"and list which entities would have fired, and when; nothing is stored or sent",
				Body: ref("AlertRulePreview"), Response: ref("AlertPreview"), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/alert-rules/{id}", Access: auth.PermAlertRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "Get a rule; one whose scope names what the caller's data scope does not cover answers 404", Response: rule, Errors: []int{401, 403, 404}, Codes: codes}},
		{Method: "PUT", Pattern: "/alert-rules/{id}", Access: auth.PermAlertWrite, Action: "alert_rule.update", Resource: "alert_rule", Handle: h.update, Doc: Doc{Tag: tag,
			Summary: "Replace a rule (the stored rule and the new one under the conditions of POST); a rule disabled or given another entity kind closes its active alerts, " +
				"one whose scope changes those the new scope no longer covers (no notification)",
			Body: ref("AlertRuleInput"), Response: rule, Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeRuleNotFound, CodeRuleNameTaken, CodeEscalation}}},
		{Method: "DELETE", Pattern: "/alert-rules/{id}", Access: auth.PermAlertWrite, Action: "alert_rule.delete", Resource: "alert_rule", Handle: h.delete, Doc: Doc{Tag: tag,
			Summary: "Delete a rule (one confined to the caller's sites, for a limited caller); its alerts stay in the history, closed", Response: objectSchema(nil), Errors: []int{401, 403, 404},
			Codes: []string{CodeRuleNotFound, CodeEscalation}}},
		{Method: "POST", Pattern: "/alert-rules/{id}/enable", Access: auth.PermAlertWrite, Action: "alert_rule.enable", Resource: "alert_rule", Handle: h.enable(true),
			Doc: Doc{Tag: tag, Summary: "Enable a rule", Response: rule, Errors: []int{401, 403, 404}, Codes: []string{CodeRuleNotFound, CodeEscalation}}},
		{Method: "POST", Pattern: "/alert-rules/{id}/disable", Access: auth.PermAlertWrite, Action: "alert_rule.disable", Resource: "alert_rule", Handle: h.enable(false),
			Doc: Doc{Tag: tag, Summary: "Disable a rule; its active alerts are closed (no notification)", Response: rule, Errors: []int{401, 403, 404},
				Codes: []string{CodeRuleNotFound, CodeEscalation}}},
	}
}

// conditionInput is one condition of a rule body.
type conditionInput struct {
	Metric         *string  `json:"metric"`
	Agg            *string  `json:"agg"`
	Window         *string  `json:"window"`
	Op             *string  `json:"op"`
	Threshold      *float64 `json:"threshold"`
	ClearThreshold *float64 `json:"clear_threshold"`
}

// ruleInput is the body of POST /alert-rules and PUT /alert-rules/{id}.
type ruleInput struct {
	Name           *string           `json:"name"`
	Description    *string           `json:"description"`
	EntityKind     *string           `json:"entity_kind"`
	Severity       *string           `json:"severity"`
	Enabled        *bool             `json:"enabled"`
	Match          *string           `json:"match"`
	Conditions     []conditionInput  `json:"conditions"`
	For            *string           `json:"for"`
	KeepFiringFor  *string           `json:"keep_firing_for"`
	Scope          *alert.Scope      `json:"scope"`
	Labels         map[string]string `json:"labels"`
	Annotations    map[string]string `json:"annotations"`
	Channels       []string          `json:"channels"`
	RepeatInterval *string           `json:"repeat_interval"`
	GroupBy        []string          `json:"group_by"`
	GroupWait      *string           `json:"group_wait"`

	rule alert.Rule
}

func parseDur(v *fieldErrors, field string, s *string) alert.Duration {
	if s == nil || *s == "" || *s == "0" {
		return 0
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		v.add(field, FieldInvalidFormat, map[string]any{"format": "a duration such as 30s, 5m, 1h"})
	}
	return alert.Duration(d)
}

func (b *ruleInput) validate(v *fieldErrors) {
	r := alert.Rule{Name: deref(b.Name), Description: deref(b.Description), EntityKind: deref(b.EntityKind), Severity: deref(b.Severity),
		Enabled: b.Enabled == nil || *b.Enabled, Match: deref(b.Match), Labels: b.Labels, Annotations: b.Annotations}
	r.For = parseDur(v, "for", b.For)
	r.KeepFiringFor = parseDur(v, "keep_firing_for", b.KeepFiringFor)
	r.RepeatInterval = parseDur(v, "repeat_interval", b.RepeatInterval)
	r.GroupWait = parseDur(v, "group_wait", b.GroupWait)
	r.GroupBy = b.GroupBy
	if b.Scope != nil {
		r.Scope = *b.Scope
	}
	for i, c := range b.Conditions {
		p := fmt.Sprintf("conditions[%d]", i)
		cd := alert.Condition{Metric: deref(c.Metric), Agg: deref(c.Agg), Op: deref(c.Op), ClearThreshold: c.ClearThreshold}
		cd.Window = parseDur(v, p+".window", c.Window)
		if v.required(p+".threshold", c.Threshold != nil) {
			cd.Threshold = *c.Threshold
		}
		r.Conditions = append(r.Conditions, cd)
	}
	for i, s := range b.Channels {
		id, err := uuid.Parse(s)
		if err != nil {
			v.add(fmt.Sprintf("channels[%d]", i), FieldInvalidFormat, map[string]any{"format": "a channel id (UUID)"})
			continue
		}
		r.Channels = append(r.Channels, id)
	}
	r.Normalize()
	if err := r.Validate(); err != nil {
		if ve, ok := err.(*alert.ValidationError); ok {
			for _, f := range ve.Fields {
				v.add(f.Field, f.Code, f.Params)
			}
		}
	}
	b.rule = r
}

func pathRuleID(r *http.Request) (uuid.UUID, error) { return pathID(r, CodeRuleNotFound) }

func (h *alertRulesResource) list(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := alert.RuleFilter{Kind: q.oneOf("kind", alert.Kinds...), Severity: q.oneOf("severity", alert.SeverityCritical, alert.SeverityWarning, alert.SeverityInfo),
		Enabled: q.boolean("enabled"), Q: q.str("q", 200)}
	f.Page, f.PageSize = q.page()
	if err := q.err(); err != nil {
		return err
	}
	items, total, err := h.a.alerts.ListRules(r.Context(), f)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, pageOf[alert.Rule]{Items: items, Total: total, Page: f.Page, PageSize: f.PageSize})
	return nil
}

func (h *alertRulesResource) respond(w http.ResponseWriter, r *http.Request, status int, id uuid.UUID) error {
	rule, err := h.a.alerts.Rule(r.Context(), id)
	if err != nil {
		return alertError(err, CodeRuleNotFound)
	}
	writeData(w, r, status, rule)
	return nil
}

func (h *alertRulesResource) create(w http.ResponseWriter, r *http.Request) error {
	var body ruleInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	id, err := h.a.alerts.CreateRule(r.Context(), body.rule, actorLabel(r))
	if err != nil {
		return ruleWriteError(err)
	}
	setAuditResource(r, id.String())
	return h.respond(w, r, http.StatusCreated, id)
}

func (h *alertRulesResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathRuleID(r)
	if err != nil {
		return err
	}
	return h.respond(w, r, http.StatusOK, id)
}

// ruleWriteError maps the errors of the rule writes: a rule outside the
// caller's data scope is 403 AUTH_ESCALATION_DENIED naming the scope's
// lists at fault (data.scope_fields); the checks run in the write's own
// transaction, on the locked row (alert.DB).
func ruleWriteError(err error) error {
	var se *alert.ScopeError
	if errors.As(err, &se) {
		e := scopeDenied("rule_outside_scope").(*Error)
		e.Data["scope_fields"] = se.Fields
		return e
	}
	return alertError(err, CodeRuleNotFound)
}

func (h *alertRulesResource) update(w http.ResponseWriter, r *http.Request) error {
	id, err := pathRuleID(r)
	if err != nil {
		return err
	}
	var body ruleInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if err := h.a.alerts.UpdateRule(r.Context(), id, body.rule, actorLabel(r)); err != nil {
		return ruleWriteError(err)
	}
	return h.respond(w, r, http.StatusOK, id)
}

func (h *alertRulesResource) delete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathRuleID(r)
	if err != nil {
		return err
	}
	if err := h.a.alerts.DeleteRule(r.Context(), id); err != nil {
		return ruleWriteError(err)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

func (h *alertRulesResource) enable(on bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathRuleID(r)
		if err != nil {
			return err
		}
		if err := h.a.alerts.SetRuleEnabled(r.Context(), id, on, actorLabel(r)); err != nil {
			return ruleWriteError(err)
		}
		return h.respond(w, r, http.StatusOK, id)
	}
}

// MaxPreviewRange is the longest span a preview evaluates.
const MaxPreviewRange = 24 * time.Hour

// previewInput is the body of POST /alert-rules/preview.
type previewInput struct {
	Rule *ruleInput `json:"rule"`
	From *time.Time `json:"from"`
	To   *time.Time `json:"to"`
}

func (b *previewInput) validate(v *fieldErrors) {
	if !v.required("rule", b.Rule != nil) {
		return
	}
	if b.Rule.Name == nil {
		b.Rule.Name = new(string)
		*b.Rule.Name = "preview"
	}
	var sub fieldErrors
	b.Rule.validate(&sub)
	for _, f := range sub.list {
		v.add("rule."+f.Field, f.Code, f.Params)
	}
}

func (h *alertRulesResource) preview(w http.ResponseWriter, r *http.Request) error {
	var body previewInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	to := h.a.now().UTC()
	if body.To != nil {
		to = body.To.UTC()
	}
	from := to.Add(-6 * time.Hour)
	if body.From != nil {
		from = body.From.UTC()
	}
	switch {
	case !to.After(from):
		return validationError(FieldError{Field: "to", Code: FieldOutOfRange, Params: map[string]any{"min": "from", "max": "∞"}})
	case to.Sub(from) > MaxPreviewRange:
		return validationError(FieldError{Field: "from", Code: FieldOutOfRange, Params: map[string]any{"min": "to - 24h", "max": "to"}})
	}
	res, err := h.a.alerts.Preview(r.Context(), body.Rule.rule, from, to)
	if err != nil {
		return alertError(err, CodeRuleNotFound)
	}
	writeData(w, r, http.StatusOK, res)
	return nil
}
