package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// diffFields compares two values field by field (by their JSON form) and
// returns {field: {"before": …, "after": …}} for each that differs, for an
// audit record's summary.
func diffFields(before, after any, skip ...string) map[string]any {
	asMap := func(v any) map[string]any {
		m := map[string]any{}
		if b, err := json.Marshal(v); err == nil {
			_ = json.Unmarshal(b, &m)
		}
		return m
	}
	b, a := asMap(before), asMap(after)
	out := map[string]any{}
	for k, av := range a {
		if slices.Contains(skip, k) {
			continue
		}
		if bv, ok := b[k]; !ok || !reflect.DeepEqual(av, bv) {
			out[k] = map[string]any{"before": b[k], "after": av}
		}
	}
	for k, bv := range b {
		if _, ok := a[k]; !ok && !slices.Contains(skip, k) {
			out[k] = map[string]any{"before": bv, "after": nil}
		}
	}
	return out
}

// settingsResource is /system/settings: runtime settings stored in the
// database, so that a change applies on every replica without a restart.
// Today: the retention of each storage tier (read by the retention job at
// every run; the change also runs the job at once).
type settingsResource struct{ a *API }

// Routes lists the settings routes.
func (h *settingsResource) Routes() []Route {
	const tag = "system"
	return []Route{
		{Method: "GET", Pattern: "/system/settings", Access: auth.PermSystemWrite, Handle: h.get, Doc: Doc{Tag: tag,
			Summary:  "The runtime settings in effect: retention per storage tier, and whether each group comes from the configuration file or was set here",
			Response: ref("Settings"), Errors: []int{401, 403, 503}}},
		{Method: "PUT", Pattern: "/system/settings", Access: auth.PermSystemWrite, Action: "settings.update", Resource: "settings", Handle: h.put,
			Doc: Doc{Tag: tag, Summary: "Change runtime settings (fields left out keep their value): retention per tier (raw at least 48h, each rollup tier " +
				"at least raw; 0s keeps a tier forever). Every replica applies it without a restart; the retention job runs at once. " +
				"The audit record has the before/after difference",
				Body: ref("SettingsInput"), Response: ref("Settings"), Errors: []int{401, 403, 422, 503}}},
	}
}

func settingsSchemas() map[string]any {
	tiers := func(d string) map[string]any {
		return desc(objectSchema(map[string]any{"raw": str, "5m": str, "1h": str, "1d": str}), d)
	}
	return map[string]any{
		"Settings": objectSchema(map[string]any{
			"retention":  tiers("how long each tier is kept (e.g. 336h); 0s keeps it forever"),
			"sources":    desc(map[string]any{"type": "object", "additionalProperties": str}, "per group: config (the file) or settings (set here)"),
			"version":    desc(integer, "grows with every change"),
			"updated_at": nullable(dateTime, "null while nothing was set here"), "updated_by": str}),
		"SettingsInput": objectSchema(map[string]any{"retention": tiers("any of the tiers")}),
	}
}

// Settings is the document of /system/settings.
type Settings struct {
	Retention map[string]string `json:"retention"`
	Sources   map[string]string `json:"sources"`
	Version   int64             `json:"version"`
	UpdatedAt *time.Time        `json:"updated_at"`
	UpdatedBy string            `json:"updated_by"`
}

// configRetention is the configuration file's retention (what /system/info
// shows), the fallback of the setting.
func (a *API) configRetention() store.Retention {
	r := store.DefaultRetention
	parse := func(key string, dst *time.Duration) {
		if d, err := time.ParseDuration(a.info.Config.Retention[key]); err == nil {
			*dst = d
		}
	}
	parse("raw", &r.Raw)
	parse("5m", &r.R5m)
	parse("1h", &r.R1h)
	parse("1d", &r.R1d)
	return r
}

func retentionMap(r store.Retention) map[string]string {
	return map[string]string{"raw": FormatDuration(r.Raw), "5m": FormatDuration(r.R5m), "1h": FormatDuration(r.R1h), "1d": FormatDuration(r.R1d)}
}

func (h *settingsResource) read(ctx context.Context) (Settings, error) {
	out := Settings{Sources: map[string]string{"retention": "config"}}
	r, err := jobs.StoredRetention(ctx, h.a.pool, h.a.configRetention())
	if err != nil {
		return out, err
	}
	out.Retention = retentionMap(r)
	var at time.Time
	err = h.a.pool.QueryRow(ctx, `SELECT version, updated_at, updated_by FROM settings WHERE key = $1`, jobs.SettingRetention).
		Scan(&out.Version, &at, &out.UpdatedBy)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return out, err
	default:
		at = at.UTC()
		out.UpdatedAt, out.Sources["retention"] = &at, "settings"
	}
	return out, nil
}

func (h *settingsResource) get(w http.ResponseWriter, r *http.Request) error {
	s, err := h.read(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, s)
	return nil
}

// settingsInput is the body of PUT /system/settings.
type settingsInput struct {
	Retention *struct {
		Raw *string `json:"raw"`
		R5m *string `json:"5m"`
		R1h *string `json:"1h"`
		R1d *string `json:"1d"`
	} `json:"retention"`
}

func (b *settingsInput) validate(v *fieldErrors) {
	if b.Retention == nil {
		v.add("retention", FieldRequired, nil)
		return
	}
	for name, p := range map[string]*string{"raw": b.Retention.Raw, "5m": b.Retention.R5m, "1h": b.Retention.R1h, "1d": b.Retention.R1d} {
		if p == nil {
			continue
		}
		if d, err := time.ParseDuration(*p); err != nil || d < 0 || d > 100*365*24*time.Hour {
			v.add("retention."+name, FieldInvalidFormat, map[string]any{"format": "a duration such as 336h, up to 100 years; 0s keeps the tier forever"})
		}
	}
}

func (h *settingsResource) put(w http.ResponseWriter, r *http.Request) error {
	var body settingsInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	ctx := r.Context()
	before, err := h.read(ctx)
	if err != nil {
		return err
	}
	cur, err := jobs.StoredRetention(ctx, h.a.pool, h.a.configRetention())
	if err != nil {
		return err
	}
	set := func(p *string, dst *time.Duration) {
		if p != nil {
			*dst, _ = time.ParseDuration(*p) // validated
		}
	}
	in := body.Retention
	set(in.Raw, &cur.Raw)
	set(in.R5m, &cur.R5m)
	set(in.R1h, &cur.R1h)
	set(in.R1d, &cur.R1d)
	var v fieldErrors
	if cur.Raw != 0 && cur.Raw < 48*time.Hour {
		v.add("retention.raw", FieldOutOfRange, map[string]any{"min": "48h", "max": "100 years (or 0s: forever)"})
	}
	for name, d := range map[string]time.Duration{"5m": cur.R5m, "1h": cur.R1h, "1d": cur.R1d} {
		if d != 0 && (d < cur.Raw || cur.Raw == 0) {
			v.add("retention."+name, FieldOutOfRange, map[string]any{"min": "the raw retention", "max": "100 years (or 0s: forever)"})
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	doc, err := json.Marshal(jobs.DocOf(cur))
	if err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(ctx)
	if _, err := h.a.pool.Exec(ctx, `INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = settings.version + 1, updated_at = now(), updated_by = EXCLUDED.updated_by`,
		jobs.SettingRetention, doc, principalLabel(p)); err != nil {
		return err
	}
	after, err := h.read(ctx)
	if err != nil {
		return err
	}
	addAuditSummary(r, "changes", diffFields(before, after, "version", "updated_at", "updated_by"))
	if h.a.jobs != nil {
		if err := h.a.jobs.Request(ctx, jobs.JobRetention, principalLabel(p)); err != nil && !errors.Is(err, jobs.ErrNotFound) {
			h.a.log.Warn("settings: retention job not requested", "err", err)
		}
	}
	writeData(w, r, http.StatusOK, after)
	return nil
}
