package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Silences and notification channels.

type alertConfigResource struct{ a *API }

// Routes lists the silence and channel routes.
func (h *alertConfigResource) Routes() []Route {
	const tag = "alerts"
	ch := ref("NotificationChannel")
	chCodes := []string{CodeChannelNotFound}
	return []Route{
		{Method: "GET", Pattern: "/silences", Access: auth.PermAlertRead, Handle: h.listSilences, Doc: Doc{Tag: tag,
			Summary: "List silences (active, pending, and those that ended in the last 90 days)",
			Params:  []Param{{Name: "state", Description: "active, pending or expired; default all"}}, Response: listSchema(ref("Silence")),
			Errors: []int{401, 403, 422}}},
		{Method: "POST", Pattern: "/silences", Access: auth.PermAlertWrite, Action: "silence.create", Resource: "silence", Handle: h.createSilence, Doc: Doc{Tag: tag,
			Summary: "Silence the notifications of the alerts whose labels match every matcher (= != =~ !~) from starts_at (default now) " +
				"to ends_at; silenced alerts are still recorded. A caller whose data scope is limited must match site = one of its sites",
			Body: ref("SilenceInput"), Response: ref("Silence"), Status: http.StatusCreated, Errors: []int{401, 403, 422}, Codes: []string{CodeEscalation}}},
		{Method: "DELETE", Pattern: "/silences/{id}", Access: auth.PermAlertWrite, Action: "silence.expire", Resource: "silence", Handle: h.expireSilence,
			Doc: Doc{Tag: tag, Summary: "End a silence now (it stays listed as expired)", Response: ref("Silence"), Errors: []int{401, 403, 404},
				Codes: []string{CodeSilenceNotFound, CodeEscalation}}},
		{Method: "GET", Pattern: "/notification-channels", Access: auth.PermAlertWrite, Handle: h.listChannels, Doc: Doc{Tag: tag,
			Summary: "List notification channels; secrets are never returned (secret_keys names those set)", Response: listSchema(ch), Errors: []int{401, 403}}},
		{Method: "POST", Pattern: "/notification-channels", Access: auth.PermAlertWrite, Action: "notification_channel.create", Resource: "notification_channel",
			Handle: h.createChannel, Doc: Doc{Tag: tag,
				Summary: "Create a channel: a notifier plugin (type: webhook, email, dingtalk, wecom, ...) and its config, which the plugin checks; " +
					"secrets are write-only and merged into the config only when sending",
				Body: ref("NotificationChannelInput"), Response: ch, Status: http.StatusCreated, Errors: []int{401, 403, 409, 422},
				Codes: []string{CodeChannelNameTaken}}},
		{Method: "GET", Pattern: "/notification-channels/{id}", Access: auth.PermAlertWrite, Handle: h.getChannel, Doc: Doc{Tag: tag,
			Summary: "Get a channel (without its secrets)", Response: ch, Errors: []int{401, 403, 404}, Codes: chCodes}},
		{Method: "PUT", Pattern: "/notification-channels/{id}", Access: auth.PermAlertWrite, Action: "notification_channel.update", Resource: "notification_channel",
			Handle: h.updateChannel, Doc: Doc{Tag: tag, Summary: "Replace a channel; secrets omitted keep the stored ones, an empty object clears them",
				Body: ref("NotificationChannelInput"), Response: ch, Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeChannelNotFound, CodeChannelNameTaken}}},
		{Method: "DELETE", Pattern: "/notification-channels/{id}", Access: auth.PermAlertWrite, Action: "notification_channel.delete", Resource: "notification_channel",
			Handle: h.deleteChannel, Doc: Doc{Tag: tag, Summary: "Delete a channel no rule names (its queued notifications go with it)",
				Response: objectSchema(nil), Errors: []int{401, 403, 404, 409}, Codes: []string{CodeChannelNotFound, CodeChannelInUse}}},
		{Method: "POST", Pattern: "/notification-channels/{id}/test", Access: auth.PermAlertWrite, Action: "notification_channel.test", Resource: "notification_channel",
			Handle: h.testChannel, Doc: Doc{Tag: tag,
				Summary:  "Send a test notification through the channel now and report what the provider answered (the attempt is recorded)",
				Response: ref("ChannelTestResult"), Errors: []int{401, 403, 404, 503}, Codes: []string{CodeChannelNotFound, CodeNotifierUnavailable}}},
	}
}

// silenceInput is the body of POST /silences.
type silenceInput struct {
	Matchers []alert.Matcher `json:"matchers"`
	StartsAt *time.Time      `json:"starts_at"`
	EndsAt   *time.Time      `json:"ends_at"`
	Comment  *string         `json:"comment"`
}

func (h *alertConfigResource) listSilences(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	state := q.oneOf("state", alert.SilenceActive, alert.SilencePending, alert.SilenceExpired)
	if err := q.err(); err != nil {
		return err
	}
	items, err := h.a.alerts.ListSilences(r.Context(), state, h.a.now())
	if err != nil {
		return err
	}
	// A caller whose scope is limited sees the silences of its sites only.
	items = slices.DeleteFunc(items, func(s alert.Silence) bool { return !withinSites(r, s.SiteOf()) })
	writeData(w, r, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (h *alertConfigResource) createSilence(w http.ResponseWriter, r *http.Request) error {
	var body silenceInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	s := alert.Silence{Matchers: body.Matchers, Comment: deref(body.Comment)}
	if body.StartsAt != nil {
		s.StartsAt = body.StartsAt.UTC()
	}
	if body.EndsAt != nil {
		s.EndsAt = body.EndsAt.UTC()
	}
	if err := s.Validate(h.a.now()); err != nil {
		return alertError(err, CodeSilenceNotFound)
	}
	if !withinSites(r, s.SiteOf()) {
		return scopeDenied("silence_outside_scope")
	}
	out, err := h.a.alerts.CreateSilence(r.Context(), s, actorLabel(r), h.a.now())
	if err != nil {
		return alertError(err, CodeSilenceNotFound)
	}
	setAuditResource(r, out.ID.String())
	writeData(w, r, http.StatusCreated, out)
	return nil
}

func (h *alertConfigResource) expireSilence(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeSilenceNotFound)
	if err != nil {
		return err
	}
	s, err := h.a.alerts.Silence(r.Context(), id, h.a.now())
	if err != nil {
		return alertError(err, CodeSilenceNotFound)
	}
	if !withinSites(r, s.SiteOf()) {
		// Another site's silence is answered as a missing one.
		return newError(http.StatusNotFound, CodeSilenceNotFound)
	}
	if err := h.a.alerts.ExpireSilence(r.Context(), id); err != nil {
		return alertError(err, CodeSilenceNotFound)
	}
	if s, err = h.a.alerts.Silence(r.Context(), id, h.a.now()); err != nil {
		return alertError(err, CodeSilenceNotFound)
	}
	writeData(w, r, http.StatusOK, s)
	return nil
}

// channelInput is the body of POST and PUT /notification-channels. The
// secrets member is redacted from the audit record (audit.Redact: its
// name holds "secret"), and never read back.
type channelInput struct {
	Name    *string         `json:"name"`
	Type    *string         `json:"type"`
	Config  json.RawMessage `json:"config"`
	Secrets map[string]any  `json:"secrets"`
	Locale  *string         `json:"locale"`
	Enabled *bool           `json:"enabled"`
	// RatePerMinute and RatePerSecond: null or absent takes the type's
	// default limits, 0 turns a limit off.
	RatePerMinute *int `json:"rate_per_minute"`
	RatePerSecond *int `json:"rate_per_second"`
}

func (b *channelInput) input() alert.ChannelInput {
	return alert.ChannelInput{Name: deref(b.Name), Type: deref(b.Type), Config: b.Config, Secrets: b.Secrets, Locale: deref(b.Locale),
		Enabled: b.Enabled == nil || *b.Enabled, RatePerMinute: b.RatePerMinute, RatePerSecond: b.RatePerSecond}
}

func (h *alertConfigResource) listChannels(w http.ResponseWriter, r *http.Request) error {
	items, err := h.a.alerts.ListChannels(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (h *alertConfigResource) respondChannel(w http.ResponseWriter, r *http.Request, status int, id uuid.UUID) error {
	c, err := h.a.alerts.Channel(r.Context(), id)
	if err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	writeData(w, r, status, c)
	return nil
}

// checkChannelConfig lets the channel's notifier plugin check its config
// (with the secrets it will be sent with), when a notifier is wired.
func (h *alertConfigResource) checkChannelConfig(ctx context.Context, id uuid.UUID, in alert.ChannelInput) error {
	if err := in.Validate(); err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	cv, ok := h.a.notifier.(alert.ConfigValidator)
	if !ok {
		return nil
	}
	cfg := map[string]any{}
	_ = json.Unmarshal(in.Config, &cfg)
	secrets := in.Secrets
	if secrets == nil && id != uuid.Nil {
		if stored, err := h.a.alerts.SendConfig(ctx, id); err == nil {
			_ = json.Unmarshal(stored.Config, &cfg)
			_ = json.Unmarshal(in.Config, &cfg) // the new config over the stored one, keeping its secrets
		}
	}
	for k, v := range secrets {
		cfg[k] = v
	}
	merged, _ := json.Marshal(cfg)
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := cv.ValidateConfig(vctx, alert.Channel{Name: in.Name, Type: in.Type, Config: merged})
	var verr *sdk.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &verr):
		fields := make([]FieldError, 0, len(verr.Fields))
		for _, f := range verr.Fields {
			field := "config"
			if f.Field != "" {
				field += "." + f.Field
			}
			if _, secret := secrets[f.Field]; secret {
				field = "secrets." + f.Field
			}
			fields = append(fields, FieldError{Field: field, Code: FieldInvalidValue, Params: map[string]any{"allowed": f.Message}})
		}
		return validationError(fields...)
	}
	// No plugin of that type (or it could not tell): the type is the problem.
	return validationError(FieldError{Field: "type", Code: FieldInvalidValue, Params: map[string]any{"allowed": "an installed notifier plugin"}})
}

func (h *alertConfigResource) createChannel(w http.ResponseWriter, r *http.Request) error {
	var body channelInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	in := body.input()
	if err := h.checkChannelConfig(r.Context(), uuid.Nil, in); err != nil {
		return err
	}
	id, err := h.a.alerts.CreateChannel(r.Context(), in, actorLabel(r))
	if err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	setAuditResource(r, id.String())
	return h.respondChannel(w, r, http.StatusCreated, id)
}

func (h *alertConfigResource) getChannel(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeChannelNotFound)
	if err != nil {
		return err
	}
	return h.respondChannel(w, r, http.StatusOK, id)
}

func (h *alertConfigResource) updateChannel(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeChannelNotFound)
	if err != nil {
		return err
	}
	var body channelInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if _, err := h.a.alerts.Channel(r.Context(), id); err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	in := body.input()
	if err := h.checkChannelConfig(r.Context(), id, in); err != nil {
		return err
	}
	if err := h.a.alerts.UpdateChannel(r.Context(), id, in); err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	return h.respondChannel(w, r, http.StatusOK, id)
}

func (h *alertConfigResource) deleteChannel(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeChannelNotFound)
	if err != nil {
		return err
	}
	if err := h.a.alerts.DeleteChannel(r.Context(), id); err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

// ChannelTestResult is the answer of a channel test.
type ChannelTestResult struct {
	IdempotencyKey string `json:"idempotency_key"`
	Outcome        string `json:"outcome"` // delivered, retry, permanent or error
	Code           string `json:"code"`
	Message        string `json:"message"`
	Error          string `json:"error"`
	DurationMS     int64  `json:"duration_ms"`
}

func (h *alertConfigResource) testChannel(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeChannelNotFound)
	if err != nil {
		return err
	}
	ch, err := h.a.alerts.SendConfig(r.Context(), id)
	if err != nil {
		return alertError(err, CodeChannelNotFound)
	}
	if h.a.notifier == nil {
		return newError(http.StatusServiceUnavailable, CodeNotifierUnavailable)
	}
	now := h.a.now().UTC()
	key := "test-" + uuid.NewString()
	n := sdk.Notification{ID: key, Channel: ch.Name, Config: ch.Config, Locale: ch.Locale, Attempt: 1, CreatedAt: now,
		Alerts: []sdk.Alert{{ID: "test", Rule: "vmpulse channel test", Severity: sdk.SeverityInfo, State: sdk.StateFiring,
			Entity: sdk.Entity{Kind: "site", ID: "test", Name: "test"}, Summary: "Test notification from vmpulse: this channel works.",
			StartsAt: now, Labels: map[string]string{"alertname": "vmpulse channel test"}}}}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	started := time.Now()
	res, nerr := h.a.notifier.Notify(ctx, ch, n)
	out := ChannelTestResult{IdempotencyKey: key, Outcome: res.Outcome.String(), Code: res.Code, Message: res.Message, DurationMS: time.Since(started).Milliseconds()}
	if nerr != nil {
		out.Outcome, out.Error = "error", nerr.Error()
	}
	if err := h.a.alerts.RecordTest(r.Context(), alert.TestDelivery{Key: key, ChannelID: id, Notification: n, Started: started, Result: res, Err: nerr}); err != nil {
		return err
	}
	addAuditSummary(r, "outcome", out.Outcome)
	writeData(w, r, http.StatusOK, out)
	return nil
}
