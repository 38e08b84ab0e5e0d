package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
// database, so that a change applies on every replica without a restart:
//   - retention per storage tier, read by the retention job at every run
//     (a change also runs the job at once);
//   - the lockout policy and session lifetimes, read by authentication at
//     each login and refresh through a cache of policyTTL (so within
//     seconds on every replica, at once on the one that took the change);
//   - the backup defaults (pg_dump's compression), read at the start of
//     every backup on whichever replica runs it.
type settingsResource struct{ a *API }

// Routes lists the settings routes.
func (h *settingsResource) Routes() []Route {
	const tag = "system"
	return []Route{
		{Method: "GET", Pattern: "/system/settings", Access: auth.PermSystemWrite, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "The runtime settings in effect: retention per storage tier, the lockout policy, session lifetimes and backup defaults, " +
				"and whether each group comes from the configuration file or was set here",
			Response: ref("Settings"), Errors: []int{401, 403, 503}}},
		{Method: "PUT", Pattern: "/system/settings", Access: auth.PermSystemWrite, Action: "settings.update", Resource: "settings", Handle: h.put,
			Doc: Doc{Tag: tag, Summary: "Change runtime settings (groups and fields left out keep their value): retention per tier (raw at least 48h, each rollup tier " +
				"at least raw; 0s keeps a tier forever); lockout (threshold 3-100 failed logins, duration 1m-24h; with user:write too); sessions (refresh_ttl 5m-720h, " +
				"max_age 1h-2160h and at least refresh_ttl); backup (compression 0-9). Every replica applies it without a restart (authentication " +
				"within " + policyTTL.String() + "); the retention job runs at once. The audit record has the before/after difference",
				Body: ref("SettingsInput"), Response: ref("Settings"), Errors: []int{401, 403, 422, 503}}},
	}
}

func settingsSchemas() map[string]any {
	tiers := func(d string) map[string]any {
		return desc(objectSchema(map[string]any{"raw": str, "5m": str, "1h": str, "1d": str}), d)
	}
	lockout := func(d string) map[string]any {
		return desc(objectSchema(map[string]any{"threshold": desc(integer, "failed logins in a row that lock an account (3-100)"),
			"duration": desc(str, "how long the account stays locked, e.g. 30m (1m-24h)")}), d)
	}
	sessions := func(d string) map[string]any {
		return desc(objectSchema(map[string]any{"refresh_ttl": desc(str, "a refresh token's lifetime: how long an idle session survives (5m-720h)"),
			"max_age": desc(str, "a session's maximum age however often it is refreshed (1h-2160h, at least refresh_ttl)")}), d)
	}
	backupS := func(d string) map[string]any {
		return desc(objectSchema(map[string]any{"compression": desc(integer, "pg_dump's compression level, 0-9 (-1 in effect: pg_dump's default)")}), d)
	}
	return map[string]any{
		"Settings": objectSchema(map[string]any{
			"retention":  tiers("how long each tier is kept (e.g. 336h); 0s keeps it forever"),
			"lockout":    lockout("the account lockout policy"),
			"sessions":   sessions("session lifetimes"),
			"backup":     backupS("backup defaults; absent when this aggregator has no backup service"),
			"sources":    desc(map[string]any{"type": "object", "additionalProperties": str}, "per group: config (the file) or settings (set here)"),
			"version":    desc(integer, "grows with every change"),
			"updated_at": nullable(dateTime, "the last change; null while nothing was set here"), "updated_by": str}),
		"SettingsInput": objectSchema(map[string]any{"retention": tiers("any of the tiers"), "lockout": lockout("either field"),
			"sessions": sessions("either field"), "backup": backupS("the compression level")}),
	}
}

// Settings is the document of /system/settings.
type Settings struct {
	Retention map[string]string `json:"retention"`
	Lockout   LockoutSettings   `json:"lockout"`
	Sessions  SessionSettings   `json:"sessions"`
	// Backup is absent when the API has no backup service.
	Backup    *BackupSettings   `json:"backup,omitempty"`
	Sources   map[string]string `json:"sources"`
	Version   int64             `json:"version"`
	UpdatedAt *time.Time        `json:"updated_at"`
	UpdatedBy string            `json:"updated_by"`
}

// LockoutSettings is the lockout policy in effect.
type LockoutSettings struct {
	Threshold int    `json:"threshold"`
	Duration  string `json:"duration"`
}

// SessionSettings are the session lifetimes in effect.
type SessionSettings struct {
	RefreshTTL string `json:"refresh_ttl"`
	MaxAge     string `json:"max_age"`
}

// BackupSettings are the backup defaults in effect.
type BackupSettings struct {
	Compression int `json:"compression"`
}

// Bounds of the settings.
const (
	minLockoutThreshold = 3
	maxLockoutThreshold = 100
	minLockoutDuration  = time.Minute
	maxLockoutDuration  = 24 * time.Hour
	minRefreshTTL       = 5 * time.Minute
	maxRefreshTTL       = 720 * time.Hour
	minSessionMaxAge    = time.Hour
	maxSessionMaxAge    = 2160 * time.Hour
)

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

// policy is the lockout policy and session lifetimes in effect: the
// stored settings over the configuration's.
type policy struct {
	auth.Policy
	lockoutSet, sessionsSet bool
	lockoutMeta, sessMeta   jobs.SettingMeta
}

// readPolicy reads the lockout and session settings, filling what is not
// set from base (the configuration).
func readPolicy(ctx context.Context, pool *pgxpool.Pool, base auth.Config) (policy, error) {
	p := policy{Policy: auth.Policy{LockoutThreshold: base.LockoutThreshold, LockoutDuration: base.LockoutDuration,
		RefreshTTL: base.RefreshTTL, SessionMaxAge: base.SessionMaxAge}}
	var l jobs.LockoutDoc
	found, meta, err := jobs.ReadSetting(ctx, pool, jobs.SettingLockout, &l)
	if err != nil {
		return p, err
	}
	if found {
		d, derr := time.ParseDuration(l.Duration)
		if derr != nil || l.Threshold < 1 {
			return p, fmt.Errorf("httpapi: stored lockout setting %+v is invalid", l)
		}
		p.LockoutThreshold, p.LockoutDuration, p.lockoutSet, p.lockoutMeta = l.Threshold, d, true, meta
	}
	var sd jobs.SessionsDoc
	found, meta, err = jobs.ReadSetting(ctx, pool, jobs.SettingSessions, &sd)
	if err != nil {
		return p, err
	}
	if found {
		r, err1 := time.ParseDuration(sd.RefreshTTL)
		m, err2 := time.ParseDuration(sd.MaxAge)
		if err1 != nil || err2 != nil || r <= 0 || m <= 0 {
			return p, fmt.Errorf("httpapi: stored sessions setting %+v is invalid", sd)
		}
		p.RefreshTTL, p.SessionMaxAge, p.sessionsSet, p.sessMeta = r, m, true, meta
	}
	return p, nil
}

// policyTTL is how long a replica keeps the lockout and session settings
// before reading them again: a change made on another replica applies here
// within it.
const policyTTL = 5 * time.Second

// policyCache serves the lockout and session settings to authentication
// (auth.Options.Policy) from the database, read again after policyTTL. If
// the database cannot be read, the last value read (at first the
// configuration's) stays in effect and the read is retried a second later.
type policyCache struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	mu   sync.Mutex
	base auth.Config
	val  auth.Policy
	next time.Time // when to read again
}

func newPolicyCache(pool *pgxpool.Pool, log *slog.Logger) *policyCache {
	return &policyCache{pool: pool, log: log}
}

// setBase records the configuration's policy (once the auth service
// filled in its defaults).
func (c *policyCache) setBase(base auth.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = base
	c.val = auth.Policy{LockoutThreshold: base.LockoutThreshold, LockoutDuration: base.LockoutDuration,
		RefreshTTL: base.RefreshTTL, SessionMaxAge: base.SessionMaxAge}
	c.next = time.Time{}
}

// policy is auth.Options.Policy.
func (c *policyCache) policy(ctx context.Context) auth.Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Before(c.next) {
		return c.val
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p, err := readPolicy(rctx, c.pool, c.base)
	if err != nil {
		c.log.Warn("settings: lockout and session settings unreadable; keeping the last ones", "err", err)
		c.next = now.Add(time.Second)
		return c.val
	}
	c.val, c.next = p.Policy, now.Add(policyTTL)
	return c.val
}

// invalidate makes the next policy call read the database.
func (c *policyCache) invalidate() {
	c.mu.Lock()
	c.next = time.Time{}
	c.mu.Unlock()
}

func (h *settingsResource) read(ctx context.Context) (Settings, error) {
	out := Settings{Sources: map[string]string{"retention": "config", "lockout": "config", "sessions": "config"}}
	r, err := jobs.StoredRetention(ctx, h.a.pool, h.a.configRetention())
	if err != nil {
		return out, err
	}
	out.Retention = retentionMap(r)
	var metas []jobs.SettingMeta
	var rd jobs.RetentionDoc
	found, meta, err := jobs.ReadSetting(ctx, h.a.pool, jobs.SettingRetention, &rd)
	if err != nil {
		return out, err
	}
	if found {
		out.Sources["retention"] = "settings"
		metas = append(metas, meta)
	}
	p, err := readPolicy(ctx, h.a.pool, h.a.auth.Config())
	if err != nil {
		return out, err
	}
	out.Lockout = LockoutSettings{Threshold: p.LockoutThreshold, Duration: FormatDuration(p.LockoutDuration)}
	out.Sessions = SessionSettings{RefreshTTL: FormatDuration(p.RefreshTTL), MaxAge: FormatDuration(p.SessionMaxAge)}
	if p.lockoutSet {
		out.Sources["lockout"] = "settings"
		metas = append(metas, p.lockoutMeta)
	}
	if p.sessionsSet {
		out.Sources["sessions"] = "settings"
		metas = append(metas, p.sessMeta)
	}
	if h.a.backups != nil {
		out.Backup = &BackupSettings{Compression: h.a.backups.ConfiguredCompression()}
		out.Sources["backup"] = "config"
		var bd jobs.BackupDoc
		found, meta, err := jobs.ReadSetting(ctx, h.a.pool, jobs.SettingBackup, &bd)
		if err != nil {
			return out, err
		}
		if found {
			out.Backup.Compression, out.Sources["backup"] = bd.Compression, "settings"
			metas = append(metas, meta)
		}
	}
	// The version is the sum of the groups' versions (each grows with
	// every change); the last change is the newest group's.
	for _, m := range metas {
		out.Version += m.Version
		if out.UpdatedAt == nil || m.UpdatedAt.After(*out.UpdatedAt) {
			at := m.UpdatedAt
			out.UpdatedAt, out.UpdatedBy = &at, m.UpdatedBy
		}
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
	Lockout *struct {
		Threshold *int    `json:"threshold"`
		Duration  *string `json:"duration"`
	} `json:"lockout"`
	Sessions *struct {
		RefreshTTL *string `json:"refresh_ttl"`
		MaxAge     *string `json:"max_age"`
	} `json:"sessions"`
	Backup *struct {
		Compression *int `json:"compression"`
	} `json:"backup"`
}

// checkDuration validates an optional duration field within [lo, hi].
func checkDuration(v *fieldErrors, field string, p *string, lo, hi time.Duration) {
	if p == nil {
		return
	}
	d, err := time.ParseDuration(*p)
	if err != nil {
		v.add(field, FieldInvalidFormat, map[string]any{"format": "a duration such as 30m or 12h"})
		return
	}
	if d < lo || d > hi {
		v.add(field, FieldOutOfRange, map[string]any{"min": FormatDuration(lo), "max": FormatDuration(hi)})
	}
}

func (b *settingsInput) validate(v *fieldErrors) {
	if b.Retention == nil && b.Lockout == nil && b.Sessions == nil && b.Backup == nil {
		v.add("retention", FieldRequired, map[string]any{"one_of": "retention, lockout, sessions, backup"})
		return
	}
	if b.Retention != nil {
		for name, p := range map[string]*string{"raw": b.Retention.Raw, "5m": b.Retention.R5m, "1h": b.Retention.R1h, "1d": b.Retention.R1d} {
			if p == nil {
				continue
			}
			if d, err := time.ParseDuration(*p); err != nil || d < 0 || d > 100*365*24*time.Hour {
				v.add("retention."+name, FieldInvalidFormat, map[string]any{"format": "a duration such as 336h, up to 100 years; 0s keeps the tier forever"})
			}
		}
	}
	if b.Lockout != nil {
		if t := b.Lockout.Threshold; t != nil && (*t < minLockoutThreshold || *t > maxLockoutThreshold) {
			v.add("lockout.threshold", FieldOutOfRange, map[string]any{"min": minLockoutThreshold, "max": maxLockoutThreshold})
		}
		checkDuration(v, "lockout.duration", b.Lockout.Duration, minLockoutDuration, maxLockoutDuration)
	}
	if b.Sessions != nil {
		checkDuration(v, "sessions.refresh_ttl", b.Sessions.RefreshTTL, minRefreshTTL, maxRefreshTTL)
		checkDuration(v, "sessions.max_age", b.Sessions.MaxAge, minSessionMaxAge, maxSessionMaxAge)
	}
	if b.Backup != nil {
		if c := b.Backup.Compression; c != nil && (*c < 0 || *c > 9) {
			v.add("backup.compression", FieldOutOfRange, map[string]any{"min": 0, "max": 9})
		}
	}
}

func (h *settingsResource) put(w http.ResponseWriter, r *http.Request) error {
	var body settingsInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	ctx := r.Context()
	if body.Lockout != nil || body.Sessions != nil {
		// The lockout policy and session lifetimes act on every account:
		// with system:write alone they could lock administrators out (one
		// wrong password, a day's lockout), a way round "no lock on a user
		// who holds more". They also need user:write.
		if p := actor(r); p == nil || !p.Has(auth.PermUserWrite) {
			e := newError(http.StatusForbidden, CodeForbidden)
			e.Data = map[string]any{"permission": auth.PermUserWrite}
			return e
		}
	}
	if body.Backup != nil && h.a.backups == nil {
		var v fieldErrors
		v.add("backup", FieldInvalidValue, map[string]any{"reason": "this aggregator has no backup service"})
		return v.err()
	}
	before, err := h.read(ctx)
	if err != nil {
		return err
	}
	type write struct {
		key string
		doc any
	}
	var writes []write
	var v fieldErrors
	if in := body.Retention; in != nil {
		cur, err := jobs.StoredRetention(ctx, h.a.pool, h.a.configRetention())
		if err != nil {
			return err
		}
		set := func(p *string, dst *time.Duration) {
			if p != nil {
				*dst, _ = time.ParseDuration(*p) // validated
			}
		}
		set(in.Raw, &cur.Raw)
		set(in.R5m, &cur.R5m)
		set(in.R1h, &cur.R1h)
		set(in.R1d, &cur.R1d)
		if cur.Raw != 0 && cur.Raw < 48*time.Hour {
			v.add("retention.raw", FieldOutOfRange, map[string]any{"min": "48h", "max": "100 years (or 0s: forever)"})
		}
		for name, d := range map[string]time.Duration{"5m": cur.R5m, "1h": cur.R1h, "1d": cur.R1d} {
			if d != 0 && (d < cur.Raw || cur.Raw == 0) {
				v.add("retention."+name, FieldOutOfRange, map[string]any{"min": "the raw retention", "max": "100 years (or 0s: forever)"})
			}
		}
		writes = append(writes, write{jobs.SettingRetention, jobs.DocOf(cur)})
	}
	cur, err := readPolicy(ctx, h.a.pool, h.a.auth.Config())
	if err != nil {
		return err
	}
	if in := body.Lockout; in != nil {
		if in.Threshold != nil {
			cur.LockoutThreshold = *in.Threshold
		}
		if in.Duration != nil {
			cur.LockoutDuration, _ = time.ParseDuration(*in.Duration) // validated
		}
		writes = append(writes, write{jobs.SettingLockout, jobs.LockoutDoc{Threshold: cur.LockoutThreshold, Duration: cur.LockoutDuration.String()}})
	}
	if in := body.Sessions; in != nil {
		if in.RefreshTTL != nil {
			cur.RefreshTTL, _ = time.ParseDuration(*in.RefreshTTL) // validated
		}
		if in.MaxAge != nil {
			cur.SessionMaxAge, _ = time.ParseDuration(*in.MaxAge) // validated
		}
		if cur.SessionMaxAge < cur.RefreshTTL {
			v.add("sessions.max_age", FieldOutOfRange, map[string]any{"min": "sessions.refresh_ttl (" + FormatDuration(cur.RefreshTTL) + ")",
				"max": FormatDuration(maxSessionMaxAge)})
		}
		writes = append(writes, write{jobs.SettingSessions, jobs.SessionsDoc{RefreshTTL: cur.RefreshTTL.String(), MaxAge: cur.SessionMaxAge.String()}})
	}
	if in := body.Backup; in != nil && in.Compression != nil {
		writes = append(writes, write{jobs.SettingBackup, jobs.BackupDoc{Compression: *in.Compression}})
	}
	if err := v.err(); err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(ctx)
	err = pgx.BeginFunc(ctx, h.a.pool, func(tx pgx.Tx) error {
		for _, wr := range writes {
			if err := jobs.WriteSetting(ctx, tx, wr.key, wr.doc, principalLabel(p)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// This replica at once; the others within policyTTL.
	if h.a.policy != nil {
		h.a.policy.invalidate()
	}
	after, err := h.read(ctx)
	if err != nil {
		return err
	}
	addAuditSummary(r, "changes", diffFields(before, after, "version", "updated_at", "updated_by", "sources"))
	if body.Retention != nil && h.a.jobs != nil {
		if err := h.a.jobs.Request(ctx, jobs.JobRetention, principalLabel(p)); err != nil && !errors.Is(err, jobs.ErrNotFound) {
			h.a.log.Warn("settings: retention job not requested", "err", err)
		}
	}
	writeData(w, r, http.StatusOK, after)
	return nil
}
