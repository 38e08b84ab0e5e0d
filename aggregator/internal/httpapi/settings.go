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
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/collection"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
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
//     every backup on whichever replica runs it;
//   - the collection settings pushed to agents (package
//     ingest/collection): written with a notification that every replica
//     receives at COMMIT and answers by sending them to the agents
//     connected to it; every Welcome carries them too.
type settingsResource struct{ a *API }

// Routes lists the settings routes.
func (h *settingsResource) Routes() []Route {
	const tag = "system"
	return []Route{
		{Method: "GET", Pattern: "/system/settings", Access: auth.PermSystemWrite, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "The runtime settings in effect: retention per storage tier, the lockout policy, session lifetimes, backup defaults and the " +
				"collection settings pushed to agents, and whether each group comes from the configuration file (for collection: the agents' own) or was set here",
			Response: ref("Settings"), Errors: []int{401, 403, 503}}},
		{Method: "PUT", Pattern: "/system/settings", Access: auth.PermSystemWrite, Action: "settings.update", Resource: "settings", Handle: h.put,
			Doc: Doc{Tag: tag, Summary: "Change runtime settings (groups and fields left out keep their value): retention per tier (raw at least 48h, each rollup tier " +
				"at least raw; 0s keeps a tier forever); lockout (threshold 3-100 failed logins, duration 1m-24h; with user:write too); sessions (refresh_ttl 5m-720h, " +
				"max_age 1h-2160h and at least refresh_ttl); backup (compression 0-9); collection (realtime_interval 20s-300s in multiples of 20s, " +
				"historical_interval 5m-24h in multiples of 5m, events_poll 5s-1h, tag_interval 1m-24h, counters per kind vm/host/cluster/datastore as " +
				"group.counter.rollup; \"0s\", or null/[] for a kind, returns a field to the agents' own configuration; each change bumps the revision " +
				"and is sent to every connected agent, which applies it without restarting). Every replica applies it without a restart (authentication " +
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
	durOrNull := func(d string) map[string]any { return nullable(str, d) }
	collectionS := func(d string, input bool) map[string]any {
		counters := desc(map[string]any{"type": "object", "additionalProperties": arrayOf(desc(str, "group.counter.rollup, e.g. cpu.usage.average"))},
			"per entity kind (vm, host, cluster, datastore) the counters the agents collect; a kind absent keeps the agents' own set")
		props := map[string]any{
			"realtime_interval":   durOrNull("how often agents collect vCenter's realtime (20 s) samples of VMs and hosts: 20s-300s, a multiple of 20s"),
			"historical_interval": durOrNull("how often agents collect the 5-minute samples of clusters and datastores: 5m-24h, a multiple of 5m"),
			"events_poll":         durOrNull("the least time between two reads of vCenter's events: 5s-1h"),
			"tag_interval":        durOrNull("how often vSphere tags are read again: 1m-24h"),
			"counters":            counters,
		}
		if input {
			counters["description"] = "per entity kind (vm, host, cluster, datastore) the counters the agents collect; null or [] returns the kind to the agents' own set"
			for _, k := range []string{"realtime_interval", "historical_interval", "events_poll", "tag_interval"} {
				props[k] = desc(str, props[k].(map[string]any)["description"].(string)+`; "0s" returns the field to the agents' own configuration`)
			}
		} else {
			props["revision"] = desc(integer, "the time of the last change in Unix ms (at least the previous revision + 1, also after a restore); "+
				"0 while never set. Agents ignore a revision older than the one they applied")
		}
		return desc(objectSchema(props), d)
	}
	return map[string]any{
		"Settings": objectSchema(map[string]any{
			"collection": collectionS("the collection settings pushed to agents; a null field leaves each agent's own configuration (agent.yml) in force", false),
			"retention":  tiers("how long each tier is kept (e.g. 336h); 0s keeps it forever"),
			"lockout":    lockout("the account lockout policy"),
			"sessions":   sessions("session lifetimes"),
			"backup":     backupS("backup defaults; absent when this aggregator has no backup service"),
			"sources":    desc(map[string]any{"type": "object", "additionalProperties": str}, "per group: config (the file; for collection: agents, each agent's own) or settings (set here)"),
			"version":    desc(integer, "grows with every change"),
			"updated_at": nullable(dateTime, "the last change; null while nothing was set here"), "updated_by": str}),
		"SettingsInput": objectSchema(map[string]any{"retention": tiers("any of the tiers"), "lockout": lockout("either field"),
			"sessions": sessions("either field"), "backup": backupS("the compression level"),
			"collection": collectionS("any of the fields; those left out keep their value", true)}),
	}
}

// Settings is the document of /system/settings.
type Settings struct {
	Retention map[string]string `json:"retention"`
	Lockout   LockoutSettings   `json:"lockout"`
	Sessions  SessionSettings   `json:"sessions"`
	// Backup is absent when the API has no backup service.
	Backup *BackupSettings `json:"backup,omitempty"`
	// Collection is what agents are told to collect.
	Collection CollectionSettings `json:"collection"`
	Sources    map[string]string  `json:"sources"`
	Version    int64              `json:"version"`
	UpdatedAt  *time.Time         `json:"updated_at"`
	UpdatedBy  string             `json:"updated_by"`
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

// CollectionSettings are the collection settings pushed to agents; a nil
// field (a kind absent from Counters) leaves each agent's own
// configuration in force.
type CollectionSettings struct {
	Revision           int64               `json:"revision"`
	RealtimeInterval   *string             `json:"realtime_interval"`
	HistoricalInterval *string             `json:"historical_interval"`
	EventsPoll         *string             `json:"events_poll"`
	TagInterval        *string             `json:"tag_interval"`
	Counters           map[string][]string `json:"counters"`
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

	minRealtimeInterval   = 20 * time.Second // vCenter's realtime sampling period
	maxRealtimeInterval   = 5 * time.Minute
	minHistoricalInterval = 5 * time.Minute // vCenter's first historical interval
	maxHistoricalInterval = 24 * time.Hour
	minEventsPoll         = 5 * time.Second
	maxEventsPoll         = time.Hour
	minTagInterval        = time.Minute
	maxTagInterval        = 24 * time.Hour
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
	out := Settings{Sources: map[string]string{"retention": "config", "lockout": "config", "sessions": "config", "collection": "agents"}}
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
	cd, cmeta, found, err := collection.Read(ctx, h.a.pool)
	if err != nil {
		return out, err
	}
	out.Collection = collectionView(cd)
	if found {
		out.Collection.Revision = cmeta.Revision
		metas = append(metas, jobs.SettingMeta{Version: cmeta.Revision, UpdatedAt: cmeta.UpdatedAt, UpdatedBy: cmeta.UpdatedBy})
		if !cd.Empty() {
			out.Sources["collection"] = "settings"
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
	Collection *collectionInput `json:"collection"`
}

// collectionInput is the collection group of PUT /system/settings: a
// field left out keeps its value; "0s" (a kind: null or []) returns it to
// the agents' own configuration.
type collectionInput struct {
	RealtimeInterval   *string              `json:"realtime_interval"`
	HistoricalInterval *string              `json:"historical_interval"`
	EventsPoll         *string              `json:"events_poll"`
	TagInterval        *string              `json:"tag_interval"`
	Counters           map[string]*[]string `json:"counters"`
}

// durations lists the interval fields with their bounds and step (0: any).
func (c *collectionInput) durations() []collectionDuration {
	return []collectionDuration{
		{"realtime_interval", c.RealtimeInterval, minRealtimeInterval, maxRealtimeInterval, minRealtimeInterval},
		{"historical_interval", c.HistoricalInterval, minHistoricalInterval, maxHistoricalInterval, minHistoricalInterval},
		{"events_poll", c.EventsPoll, minEventsPoll, maxEventsPoll, 0},
		{"tag_interval", c.TagInterval, minTagInterval, maxTagInterval, 0},
	}
}

type collectionDuration struct {
	name     string
	p        *string
	lo, hi   time.Duration
	multiple time.Duration
}

func (c *collectionInput) validate(v *fieldErrors) {
	if c.RealtimeInterval == nil && c.HistoricalInterval == nil && c.EventsPoll == nil && c.TagInterval == nil && c.Counters == nil {
		v.add("collection", FieldRequired, map[string]any{"one_of": "realtime_interval, historical_interval, events_poll, tag_interval, counters"})
		return
	}
	for _, f := range c.durations() {
		if f.p == nil {
			continue
		}
		field := "collection." + f.name
		d, err := time.ParseDuration(*f.p)
		if err != nil {
			v.add(field, FieldInvalidFormat, map[string]any{"format": `a duration such as 40s or 10m; "0s": the agents' own`})
			continue
		}
		if d == 0 {
			continue
		}
		if d < f.lo || d > f.hi {
			v.add(field, FieldOutOfRange, map[string]any{"min": FormatDuration(f.lo), "max": FormatDuration(f.hi)})
		} else if f.multiple > 0 && d%f.multiple != 0 {
			v.add(field, FieldInvalidValue, map[string]any{"multiple_of": FormatDuration(f.multiple)})
		} else if d%time.Second != 0 {
			v.add(field, FieldInvalidValue, map[string]any{"multiple_of": "1s"})
		}
	}
	if len(c.Counters) > len(collection.Kinds) {
		v.add("collection.counters", FieldInvalidValue, map[string]any{"kinds": collection.Kinds})
	}
	for kind, names := range c.Counters {
		if !slices.Contains(collection.Kinds, kind) {
			// The kind is not echoed back: the field names the group.
			v.add("collection.counters", FieldInvalidValue, map[string]any{"reason": "unknown entity kind", "kinds": collection.Kinds})
			continue
		}
		if names == nil {
			continue
		}
		field := "collection.counters." + kind
		if len(*names) > protocol.MaxCountersPerKind {
			v.add(field, FieldOutOfRange, map[string]any{"max": protocol.MaxCountersPerKind})
			continue
		}
		seen := map[string]bool{}
		for i, n := range *names {
			f := fmt.Sprintf("%s[%d]", field, i)
			switch {
			case !collection.ValidCounterName(n):
				v.add(f, FieldInvalidFormat, map[string]any{"format": "group.counter.rollup, e.g. cpu.usage.average (rollup: average, summation, latest, maximum, minimum or none)"})
			case seen[n]:
				v.add(f, FieldInvalidValue, map[string]any{"reason": "listed twice"})
			}
			seen[n] = true
		}
	}
}

// apply merges the (validated) input into the stored document.
func (c *collectionInput) apply(d collection.Doc) collection.Doc {
	for _, f := range []struct {
		p   *string
		dst *string
	}{{c.RealtimeInterval, &d.RealtimeInterval}, {c.HistoricalInterval, &d.HistoricalInterval}, {c.EventsPoll, &d.EventsPoll}, {c.TagInterval, &d.TagInterval}} {
		if f.p == nil {
			continue
		}
		v, _ := time.ParseDuration(*f.p) // validated
		*f.dst = ""
		if v != 0 {
			*f.dst = v.String()
		}
	}
	if len(c.Counters) > 0 {
		counters := map[string][]string{}
		for k, names := range d.Counters {
			counters[k] = names
		}
		for kind, names := range c.Counters {
			if names == nil || len(*names) == 0 {
				delete(counters, kind)
			} else {
				counters[kind] = slices.Clone(*names)
			}
		}
		d.Counters = counters
		if len(counters) == 0 {
			d.Counters = nil
		}
	}
	return d
}

// collectionView is the API's form of a stored document.
func collectionView(d collection.Doc) CollectionSettings {
	out := CollectionSettings{Counters: map[string][]string{}}
	for _, f := range []struct {
		v   string
		dst **string
	}{{d.RealtimeInterval, &out.RealtimeInterval}, {d.HistoricalInterval, &out.HistoricalInterval}, {d.EventsPoll, &out.EventsPoll}, {d.TagInterval, &out.TagInterval}} {
		if v, err := time.ParseDuration(f.v); err == nil && v > 0 {
			s := FormatDuration(v)
			*f.dst = &s
		}
	}
	for k, names := range d.Counters {
		out.Counters[k] = slices.Clone(names)
	}
	return out
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
	if b.Retention == nil && b.Lockout == nil && b.Sessions == nil && b.Backup == nil && b.Collection == nil {
		v.add("retention", FieldRequired, map[string]any{"one_of": "retention, lockout, sessions, backup, collection"})
		return
	}
	if b.Collection != nil {
		b.Collection.validate(v)
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
	// Every group acts on the whole fleet (retention deletes every site's
	// history, collection settings reach every agent, lockout and sessions
	// every account): a caller whose data scope is limited to some sites
	// changes none of them, whatever its permissions.
	if p, ok := auth.PrincipalFrom(ctx); ok && !p.Scope.Unrestricted() {
		return newError(http.StatusForbidden, CodeScopeRestricted)
	}
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
		if body.Collection == nil {
			return nil
		}
		// Read and written in the transaction (the row locked), so two
		// concurrent changes merge; every replica is told at COMMIT.
		// The row is created first if it never was, or two first changes
		// would each lock nothing and the later would drop the earlier's
		// fields. The empty row is never seen by anyone: the write below
		// replaces it in the same transaction.
		if _, err := tx.Exec(ctx, `INSERT INTO settings (key, value, updated_by) VALUES ($1, '{}', $2) ON CONFLICT (key) DO NOTHING`,
			collection.Key, principalLabel(p)); err != nil {
			return fmt.Errorf("settings: create collection settings: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM settings WHERE key = $1 FOR UPDATE`, collection.Key); err != nil {
			return fmt.Errorf("settings: lock collection settings: %w", err)
		}
		cur, _, _, err := collection.Read(ctx, tx)
		if err != nil {
			return err
		}
		_, err = collection.Write(ctx, tx, body.Collection.apply(cur), principalLabel(p))
		return err
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
