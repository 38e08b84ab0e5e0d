package httpapi

import (
	"cmp"
	"context"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// SystemStore is what the /system routes need from the database;
// *store.Store implements it.
type SystemStore interface {
	// DatabaseInfo reads the server version, TimescaleDB and the size.
	DatabaseInfo(ctx context.Context) (store.DatabaseInfo, error)
	// DatabaseSize is the database's size in bytes.
	DatabaseSize(ctx context.Context) (int64, error)
	// Storage lists the tables' sizes, row estimates and tier time ranges.
	Storage(ctx context.Context) ([]store.TableUsage, error)
	// Replicas lists the aggregator replicas alive within since.
	Replicas(ctx context.Context, since time.Duration) ([]store.Replica, error)
	// DeploymentIngest sums what every replica stored over the window.
	DeploymentIngest(ctx context.Context, window time.Duration) (store.DeploymentIngest, error)
}

// IngestStats are the ingest server's counters since this aggregator
// started, and whether its QUIC listener is bound.
type IngestStats struct {
	Listening        bool   `json:"listening"`
	Addr             string `json:"addr"`
	BatchesStored    int64  `json:"batches_stored"`
	BatchesDuplicate int64  `json:"batches_duplicate"`
	BatchesRejected  int64  `json:"batches_rejected"`
	SamplesStored    int64  `json:"samples_stored"`
	StoreRetries     int64  `json:"store_retries"`
	StreamsRefused   int64  `json:"streams_refused"`
}

// IngestMonitor reports the ingest server's state (main adapts
// ingest.Server.Stats). Implementations must be safe for concurrent use.
type IngestMonitor interface {
	IngestStats() IngestStats
}

// SystemInfo is the static part of GET /system/info, given by main.
type SystemInfo struct {
	// Version is the binary's version; "" reads it from the build
	// information (ReadBuild).
	Version string
	// StartedAt is when the aggregator started; zero means when New ran.
	StartedAt time.Time
	// Config summarizes the configuration. It must hold no secret.
	Config ConfigSummary
}

// ConfigSummary is the part of the configuration /system/info shows:
// listeners, intervals and retention, never the database URL or a key.
// Durations are strings such as "10s", "720h"; a retention of "0s" keeps
// the tier forever.
type ConfigSummary struct {
	IngestListen      string            `json:"ingest_listen"`
	HeartbeatInterval string            `json:"heartbeat_interval"`
	AgentCertLifetime string            `json:"agent_cert_lifetime"`
	Retention         map[string]string `json:"retention"`
	HTTPListen        string            `json:"http_listen"`
}

// FormatDuration writes d the short way: 720h, 5m, 1h30m, 10s.
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

// Build is what the binary knows about its own build.
type Build struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	// Revision, Time and Modified come from the VCS stamp Go embeds when
	// building from a checkout ("" when absent).
	Revision string `json:"vcs_revision"`
	Time     string `json:"vcs_time"`
	Modified bool   `json:"vcs_modified"`
}

// ReadBuild reads the running binary's build information. The version is
// the value given to the linker with -ldflags "-X main.version=…" (Go
// records the -ldflags build setting in the binary), else the main
// module's version when it is a real one, else "dev" — the default of
// main.version.
func ReadBuild() Build {
	b := Build{Version: "dev", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "-ldflags":
			if v, ok := ldflagsVersion(s.Value); ok {
				b.Version = v
			}
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// ldflagsVersion finds -X main.version=V (or -X=main.version=V) in an
// -ldflags value; V may be quoted.
func ldflagsVersion(flags string) (string, bool) {
	fields := strings.Fields(flags)
	for i, f := range fields {
		var def string
		switch {
		case f == "-X" || f == "--X":
			if i+1 < len(fields) {
				def = fields[i+1]
			}
		case strings.HasPrefix(f, "-X="):
			def = strings.TrimPrefix(f, "-X=")
		case strings.HasPrefix(f, "--X="):
			def = strings.TrimPrefix(f, "--X=")
		}
		if v, ok := strings.CutPrefix(strings.Trim(def, `'"`), "main.version="); ok && v != "" {
			return strings.Trim(v, `'"`), true
		}
	}
	return "", false
}

// Health statuses: of each component and overall.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
	HealthDown     = "down"
)

// Health thresholds for the agents component: a connected agent whose
// newest collected sample is older than AgentLagLimit, or whose spool has
// held an unacknowledged batch for longer than AgentSpoolAgeLimit, makes
// the agents degraded.
const (
	AgentLagLimit      = 5 * time.Minute
	AgentSpoolAgeLimit = 5 * time.Minute
)

// Health is GET /system/health's document.
type Health struct {
	Status     string           `json:"status"`
	CheckedAt  time.Time        `json:"checked_at"`
	Components HealthComponents `json:"components"`
}

// HealthComponents are the checks behind the overall status.
type HealthComponents struct {
	Database DatabaseHealth `json:"database"`
	Ingest   IngestHealth   `json:"ingest"`
	Agents   AgentsHealth   `json:"agents"`
	Storage  StorageHealth  `json:"storage"`
	// Jobs and Backups are present when the job runner and the backup
	// service are wired (jobs_health.go).
	Jobs    *JobsHealth    `json:"jobs,omitempty"`
	Backups *BackupsHealth `json:"backups,omitempty"`
	// Realtime is this replica's realtime hub, present when the feed
	// reports its counters (RealtimeStats; *realtime.Hub does).
	Realtime *RealtimeHealth `json:"realtime,omitempty"`
	// Deployment is every replica together, from the database.
	Deployment DeploymentHealth `json:"deployment"`
}

// DeploymentHealth is the whole deployment's ingest and its replicas, read
// from the database (the ingest ledger every replica writes, and the
// replica registry), so every replica answers the same.
type DeploymentHealth struct {
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	// ReplicasLive counts replicas with a recent heartbeat; ReplicasLost
	// those that stopped heartbeating without shutting down within the
	// last ReplicaLostWindow.
	ReplicasLive int `json:"replicas_live"`
	ReplicasLost int `json:"replicas_lost"`
	// Over the last DeploymentWindow: batches and samples stored by every
	// replica, their rates, and the delay from a batch's newest sample to
	// its commit (median and maximum over samples batches; null without
	// any).
	WindowSeconds  int64      `json:"window_seconds"`
	Batches        int64      `json:"batches"`
	Samples        int64      `json:"samples"`
	BatchesPerSec  float64    `json:"batches_per_sec"`
	SamplesPerSec  float64    `json:"samples_per_sec"`
	LagMedianMS    *int64     `json:"lag_median_ms"`
	LagMaxMS       *int64     `json:"lag_max_ms"`
	NewestSampleAt *time.Time `json:"newest_sample_at"`
	Error          string     `json:"error,omitempty"`
}

// Deployment health limits: the window the ingest rates are measured over,
// how long a replica that died stays reported, and the median ingest lag
// beyond which the deployment is degraded.
const (
	DeploymentWindow  = time.Minute
	ReplicaLostWindow = 15 * time.Minute
	DeploymentLagMax  = 5 * time.Minute
)

// DatabaseHealth is the database check: a ping with its latency.
type DatabaseHealth struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// IngestHealth is the QUIC ingest server's state and counters since start.
type IngestHealth struct {
	Status string `json:"status"`
	IngestStats
}

// AgentsHealth sums up the agent registry.
type AgentsHealth struct {
	Status string `json:"status"`
	// Reasons say why the status is not ok.
	Reasons []string `json:"reasons"`
	// Registered counts every agent, revoked ones included.
	Registered int `json:"registered"`
	Connected  int `json:"connected"`
	Revoked    int `json:"revoked"`
	// The lag, oldest unsent age and spool depth over connected agents
	// (maximum, maximum, sum), as of their last heartbeats.
	MaxCollectionLagMS int64 `json:"max_collection_lag_ms"`
	MaxOldestUnsentMS  int64 `json:"max_oldest_unsent_ms"`
	SpoolDepth         int64 `json:"spool_depth"`
}

// RealtimeHealth is this replica's realtime hub: its clients now and its
// counters since the replica started. Losses (queue drops, slow consumers
// dropped, relay drops and errors) are counted, not judged: the status is
// degraded only while the relay is on and its LISTEN connection is down
// (this replica's clients miss the other replicas' samples meanwhile).
type RealtimeHealth struct {
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	// Subscriptions and Feeds are open now.
	Subscriptions int64 `json:"subscriptions"`
	Feeds         int64 `json:"feeds"`
	// Batches published by this replica's ingest, received from other
	// replicas, fanned out, and dropped for a full queue.
	BatchesPublished  int64 `json:"batches_published"`
	BatchesReceived   int64 `json:"batches_received"`
	BatchesDispatched int64 `json:"batches_dispatched"`
	QueueDrops        int64 `json:"queue_drops"`
	SamplesDelivered  int64 `json:"samples_delivered"`
	SlowConsumers     int64 `json:"slow_consumers"`
	// The relay between replicas: on or not, listening or not, and its
	// notifications and losses.
	Relay           bool  `json:"relay"`
	RelayListening  bool  `json:"relay_listening"`
	RelaySent       int64 `json:"relay_sent"`
	RelayReceived   int64 `json:"relay_received"`
	RelayOwnSkipped int64 `json:"relay_own_skipped"`
	RelayDrops      int64 `json:"relay_drops"`
	RelayOversize   int64 `json:"relay_oversize"`
	RelayErrors     int64 `json:"relay_errors"`
}

// realtimeHealth reads the hub's counters.
func realtimeHealth(st realtime.Stats) *RealtimeHealth {
	h := &RealtimeHealth{Status: HealthOK, Reasons: []string{},
		Subscriptions: st.Subscriptions, Feeds: st.Feeds,
		BatchesPublished: st.Published, BatchesReceived: st.Received, BatchesDispatched: st.Dispatched,
		QueueDrops: st.QueueDrops, SamplesDelivered: st.Delivered, SlowConsumers: st.SlowConsumers,
		Relay: st.Relay, RelayListening: st.RelayListening, RelaySent: st.RelaySent, RelayReceived: st.RelayReceived,
		RelayOwnSkipped: st.RelayOwnSkipped, RelayDrops: st.RelayDrops, RelayOversize: st.RelayOversize, RelayErrors: st.RelayErrors,
	}
	if st.Relay && !st.RelayListening {
		h.Status = HealthDegraded
		h.Reasons = append(h.Reasons, "the realtime relay is not listening: this replica's realtime clients miss the other replicas' samples")
	}
	return h
}

// StorageHealth is the database's size.
type StorageHealth struct {
	Status        string `json:"status"`
	DatabaseBytes int64  `json:"database_bytes"`
	Error         string `json:"error,omitempty"`
}

// systemResource is /system/info, /system/health and /system/storage.
type systemResource struct{ a *API }

// Routes lists the /system routes.
func (h *systemResource) Routes() []Route {
	const tag = "system"
	return []Route{
		{Method: "GET", Pattern: "/system/info", Access: auth.PermSystemRead, Handle: h.info, Doc: Doc{Tag: tag,
			Summary:  "Version, build, start time and uptime, database (PostgreSQL version, TimescaleDB or not) and a configuration summary without secrets",
			Response: ref("SystemInfo"), Errors: []int{401, 403, 503}}},
		{Method: "GET", Pattern: "/system/health", Access: auth.PermSystemRead, Handle: h.health, Doc: Doc{Tag: tag,
			Summary: "Health of the database, ingest, agents and storage. Overall status: down when the database is (answered with 503, the document in data), " +
				"degraded when any other check is not ok (ingest not listening; a connected agent with collection lag over 5m or an unacknowledged batch older than 5m; " +
				"a failed size or registry query; a replica lost or a deployment-wide median ingest lag over 5m; the realtime relay not listening), else ok",
			Response: ref("SystemHealth"), Errors: []int{401, 403, 503}}},
		{Method: "GET", Pattern: "/system/storage", Access: auth.PermSystemRead, Handle: h.storage, Doc: Doc{Tag: tag,
			Summary:  "Size and approximate rows of each table (the samples partitions summed as one), and the oldest and newest sample of each storage tier",
			Response: ref("SystemStorage"), Errors: []int{401, 403, 503}}},
	}
}

func systemSchemas() map[string]any {
	status := map[string]any{"type": "string", "enum": []string{HealthOK, HealthDegraded, HealthDown}}
	durs := desc(objectSchema(map[string]any{"raw": str, "5m": str, "1h": str, "1d": str}), "retention per tier; 0s keeps a tier forever")
	return map[string]any{
		"SystemInfo": objectSchema(map[string]any{
			"version": desc(str, "the binary's version (set at build time)"), "go_version": str,
			"vcs_revision": str, "vcs_time": str, "vcs_modified": boolean,
			"started_at": dateTime, "uptime_seconds": integer, "uptime": desc(str, "e.g. 26h3m5s"),
			"database": objectSchema(map[string]any{"server_version": desc(str, "PostgreSQL server_version"),
				"timescaledb": desc(boolean, "samples is a TimescaleDB hypertable"), "timescaledb_version": desc(str, "empty without TimescaleDB")}),
			"config": objectSchema(map[string]any{"ingest_listen": str, "heartbeat_interval": str, "agent_cert_lifetime": str,
				"retention": durs, "http_listen": str}),
			"replicas": desc(arrayOf(objectSchema(map[string]any{
				"id": desc(str, "hostname:pid:nonce"), "state": map[string]any{"type": "string", "enum": []string{ReplicaLive, ReplicaStopped, ReplicaLost},
					"description": "live: heartbeat within 3 intervals; stopped: shut down cleanly; lost: stopped heartbeating without shutting down"},
				"version": str, "hostname": str, "ingest_addr": str, "http_addr": str, "started_at": dateTime,
				"last_heartbeat_at": dateTime, "stopped_at": nullable(dateTime, "set by a clean shutdown"),
				"agents_connected": integer, "batches_stored": desc(integer, "since the replica started"), "samples_stored": integer,
				"batches_rejected": integer, "heartbeat_interval_seconds": integer,
			})), "the aggregator replicas on this database that were alive within the last 24 h, live ones first"),
		}),
		"SystemHealth": objectSchema(map[string]any{
			"status": status, "checked_at": dateTime,
			"components": objectSchema(map[string]any{
				"database": objectSchema(map[string]any{"status": status, "latency_ms": map[string]any{"type": "number"}, "error": str}),
				"ingest": objectSchema(map[string]any{"status": status, "listening": boolean, "addr": str,
					"batches_stored": desc(integer, "since this aggregator started"), "batches_duplicate": integer, "batches_rejected": integer,
					"samples_stored": integer, "store_retries": integer, "streams_refused": integer}),
				"agents": objectSchema(map[string]any{"status": status, "reasons": strList,
					"registered": desc(integer, "revoked agents included"), "connected": integer, "revoked": integer,
					"max_collection_lag_ms": desc(integer, "over connected agents"), "max_oldest_unsent_ms": desc(integer, "over connected agents"),
					"spool_depth": desc(integer, "sum over connected agents")}),
				"storage": objectSchema(map[string]any{"status": status, "database_bytes": integer, "error": str}),
				"jobs":    desc(ref("JobsHealth"), "present when the job runner is wired"),
				"backups": desc(ref("BackupsHealth"), "present when the backup service is wired"),
				"realtime": desc(objectSchema(map[string]any{"status": status, "reasons": strList,
					"subscriptions": desc(integer, "open now (WebSocket and stream clients)"), "feeds": desc(integer, "open now"),
					"batches_published":  desc(integer, "by this replica's ingest, since this aggregator started (so are the other counters)"),
					"batches_received":   desc(integer, "from other replicas through the relay"),
					"batches_dispatched": integer, "queue_drops": desc(integer, "batches not fanned out: the hub's queue was full"),
					"samples_delivered": integer, "slow_consumers": desc(integer, "subscriptions and feeds dropped for a full buffer"),
					"relay": desc(boolean, "the relay between replicas is on"), "relay_listening": boolean,
					"relay_sent": desc(integer, "notifications"), "relay_received": desc(integer, "notifications"), "relay_own_skipped": integer,
					"relay_drops": desc(integer, "batches not relayed: the relay queue was full"), "relay_oversize": desc(integer, "batch pieces too large to relay"),
					"relay_errors": desc(integer, "notifications not sent or malformed, and LISTEN connections lost")}),
					"this replica's realtime hub: degraded while the relay is on and not listening; losses are counted, not judged"),
				"deployment": desc(objectSchema(map[string]any{"status": status, "reasons": strList,
					"replicas_live": integer, "replicas_lost": desc(integer, "replicas that stopped heartbeating without shutting down in the last 15 min"),
					"window_seconds": desc(integer, "the rates' window (60)"), "batches": desc(integer, "stored by every replica in the window"),
					"samples": integer, "batches_per_sec": map[string]any{"type": "number"}, "samples_per_sec": map[string]any{"type": "number"},
					"lag_median_ms":    nullable(integer, "median delay from a samples batch's newest sample to its commit; null without batches"),
					"lag_max_ms":       nullable(integer, "maximum of that delay (backfill shows here)"),
					"newest_sample_at": nullable(dateTime, "newest sample stored in the window"), "error": str}),
					"every replica together, read from the database: degraded when a replica stopped heartbeating without shutting down, or the median lag is over 5 min"),
			}),
		}),
		"SystemStorage": objectSchema(map[string]any{
			"database_bytes": integer,
			"tables": arrayOf(objectSchema(map[string]any{
				"name":       desc(str, "table; samples sums its daily partitions"),
				"resolution": desc(str, "storage tier (raw, 5m, 1h, 1d); empty for other tables"),
				"bytes":      desc(integer, "pg_total_relation_size: data, indexes and TOAST"),
				"rows":       desc(integer, "estimate from the planner statistics"),
				"partitions": desc(integer, "daily partitions or chunks; 0 for a plain table"),
				"oldest":     nullable(dateTime, "a tier's oldest sample; null when empty or not a tier"),
				"newest":     nullable(dateTime, "a tier's newest sample; null when empty or not a tier"),
			})),
		}),
	}
}

type systemInfoData struct {
	Build
	StartedAt     time.Time      `json:"started_at"`
	UptimeSeconds int64          `json:"uptime_seconds"`
	Uptime        string         `json:"uptime"`
	Database      systemDatabase `json:"database"`
	Config        ConfigSummary  `json:"config"`
	// Replicas are the aggregator replicas alive within ReplicaListWindow,
	// live ones first.
	Replicas []replicaInfo `json:"replicas"`
}

// ReplicaListWindow is how long /system/info lists a replica after its
// last heartbeat.
const ReplicaListWindow = 24 * time.Hour

// Replica states in /system/info.
const (
	ReplicaLive    = "live"
	ReplicaStopped = "stopped"
	ReplicaLost    = "lost"
)

type replicaInfo struct {
	ID               string     `json:"id"`
	State            string     `json:"state"`
	Version          string     `json:"version"`
	Hostname         string     `json:"hostname"`
	IngestAddr       string     `json:"ingest_addr"`
	HTTPAddr         string     `json:"http_addr"`
	StartedAt        time.Time  `json:"started_at"`
	LastHeartbeatAt  time.Time  `json:"last_heartbeat_at"`
	StoppedAt        *time.Time `json:"stopped_at"`
	AgentsConnected  int        `json:"agents_connected"`
	BatchesStored    int64      `json:"batches_stored"`
	SamplesStored    int64      `json:"samples_stored"`
	BatchesRejected  int64      `json:"batches_rejected"`
	HeartbeatSeconds int64      `json:"heartbeat_interval_seconds"`
}

type systemDatabase struct {
	ServerVersion    string `json:"server_version"`
	Timescale        bool   `json:"timescaledb"`
	TimescaleVersion string `json:"timescaledb_version"`
}

func (h *systemResource) info(w http.ResponseWriter, r *http.Request) error {
	db, err := h.a.system.DatabaseInfo(r.Context())
	if err != nil {
		return err
	}
	reps, err := h.a.system.Replicas(r.Context(), ReplicaListWindow)
	if err != nil {
		return err
	}
	replicas := make([]replicaInfo, 0, len(reps))
	for _, rp := range reps {
		state := ReplicaLost
		switch {
		case rp.Live:
			state = ReplicaLive
		case rp.StoppedAt != nil:
			state = ReplicaStopped
		}
		replicas = append(replicas, replicaInfo{ID: rp.ID, State: state, Version: rp.Version, Hostname: rp.Hostname,
			IngestAddr: rp.IngestAddr, HTTPAddr: rp.HTTPAddr, StartedAt: rp.StartedAt, LastHeartbeatAt: rp.HeartbeatAt,
			StoppedAt: rp.StoppedAt, AgentsConnected: rp.AgentsConnected, BatchesStored: rp.BatchesStored,
			SamplesStored: rp.SamplesStored, BatchesRejected: rp.BatchesRejected, HeartbeatSeconds: int64(rp.HeartbeatEvery / time.Second)})
	}
	up := max(h.a.now().Sub(h.a.info.StartedAt), 0).Truncate(time.Second)
	writeData(w, r, http.StatusOK, systemInfoData{
		Replicas: replicas,
		Build:    h.a.build, StartedAt: h.a.info.StartedAt.UTC(), UptimeSeconds: int64(up / time.Second), Uptime: up.String(),
		Database: systemDatabase{ServerVersion: db.ServerVersion, Timescale: db.Timescale, TimescaleVersion: db.TimescaleVersion},
		Config:   h.a.info.Config,
	})
	return nil
}

func (h *systemResource) health(w http.ResponseWriter, r *http.Request) error {
	doc := h.a.checkHealth(r.Context())
	if doc.Status == HealthDown {
		// The caller still gets the document: what else is down, and why.
		writeJSON(w, http.StatusServiceUnavailable, envelope{Code: CodeUnavailable, Message: message(langOf(r), CodeUnavailable), Data: doc})
		return nil
	}
	writeData(w, r, http.StatusOK, doc)
	return nil
}

// checkHealth runs every check. Each database check has its own short
// deadline so that a hung database answers "down" rather than hanging.
func (a *API) checkHealth(ctx context.Context) Health {
	doc := Health{Status: HealthOK, CheckedAt: a.now().UTC()}
	c := &doc.Components

	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	start := time.Now()
	err := a.ready(dctx)
	cancel()
	c.Database = DatabaseHealth{Status: HealthOK, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		a.log.Warn("health: database check failed", "err", err)
		c.Database.Status, c.Database.Error = HealthDown, "the database does not answer or is not migrated"
	}

	st := a.ingest.IngestStats()
	c.Ingest = IngestHealth{Status: HealthOK, IngestStats: st}
	if !st.Listening {
		c.Ingest.Status = HealthDown
	}

	c.Agents = AgentsHealth{Status: HealthOK, Reasons: []string{}}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	agents, err := a.agents.Agents(actx)
	cancel()
	if err != nil {
		a.log.Warn("health: agent registry failed", "err", err)
		c.Agents.Status = HealthDegraded
		c.Agents.Reasons = append(c.Agents.Reasons, "the agent registry could not be read")
	}
	summarizeAgents(&c.Agents, agents)

	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	size, err := a.system.DatabaseSize(sctx)
	cancel()
	c.Storage = StorageHealth{Status: HealthOK, DatabaseBytes: size}
	if err != nil {
		a.log.Warn("health: database size failed", "err", err)
		c.Storage.Status, c.Storage.Error = HealthDegraded, "the database size could not be read"
	}

	a.opsHealth(ctx, c)
	if rt, ok := a.realtime.(RealtimeStats); ok {
		c.Realtime = realtimeHealth(rt.Stats())
	}
	a.deploymentHealth(ctx, &c.Deployment)
	switch {
	case c.Database.Status == HealthDown:
		doc.Status = HealthDown
	case c.Ingest.Status != HealthOK || c.Agents.Status != HealthOK || c.Storage.Status != HealthOK || !c.opsOK() ||
		c.Deployment.Status != HealthOK || (c.Realtime != nil && c.Realtime.Status != HealthOK):
		doc.Status = HealthDegraded
	}
	return doc
}

// deploymentHealth reads the deployment's ingest over DeploymentWindow and
// the replica registry.
func (a *API) deploymentHealth(ctx context.Context, h *DeploymentHealth) {
	*h = DeploymentHealth{Status: HealthOK, Reasons: []string{}, WindowSeconds: int64(DeploymentWindow / time.Second)}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d, err := a.system.DeploymentIngest(dctx, DeploymentWindow)
	if err != nil {
		a.log.Warn("health: deployment ingest failed", "err", err)
		h.Status, h.Error = HealthDegraded, "the deployment's ingest could not be read"
		return
	}
	h.Batches, h.Samples, h.BatchesPerSec, h.SamplesPerSec = d.Batches, d.Samples, d.BatchesPerSec, d.SamplesPerSec
	ms := func(p *time.Duration) *int64 {
		if p == nil {
			return nil
		}
		v := p.Milliseconds()
		return &v
	}
	h.LagMedianMS, h.LagMaxMS, h.NewestSampleAt = ms(d.LagMedian), ms(d.LagMax), utcPtr(d.NewestSample)
	if d.LagMedian != nil && *d.LagMedian > DeploymentLagMax {
		h.Status = HealthDegraded
		h.Reasons = append(h.Reasons, "median ingest lag "+FormatDuration(d.LagMedian.Round(time.Second))+" over "+FormatDuration(DeploymentLagMax))
	}
	reps, err := a.system.Replicas(dctx, ReplicaLostWindow)
	if err != nil {
		a.log.Warn("health: replica registry failed", "err", err)
		h.Status, h.Error = HealthDegraded, "the replica registry could not be read"
		return
	}
	var lost []string
	for _, r := range reps {
		switch {
		case r.Live:
			h.ReplicasLive++
		case r.StoppedAt == nil:
			h.ReplicasLost++
			lost = append(lost, r.ID)
		}
	}
	if len(lost) > 0 {
		h.Status = HealthDegraded
		h.Reasons = append(h.Reasons, plural(len(lost), "replica")+" stopped heartbeating without shutting down: "+strings.Join(lost, ", "))
	}
}

// summarizeAgents counts the agents and applies the agent rules (see
// AgentLagLimit) to the connected ones.
func summarizeAgents(h *AgentsHealth, agents []store.Agent) {
	lagging, spooling := 0, 0
	for i := range agents {
		ag := &agents[i]
		h.Registered++
		switch agentState(ag) {
		case AgentRevoked:
			h.Revoked++
			continue
		case AgentDisconnected:
			continue
		}
		h.Connected++
		h.MaxCollectionLagMS = max(h.MaxCollectionLagMS, ag.LagMS)
		h.MaxOldestUnsentMS = max(h.MaxOldestUnsentMS, ag.OldestUnsentMS)
		h.SpoolDepth += ag.SpoolDepth
		if ag.LagMS > AgentLagLimit.Milliseconds() {
			lagging++
		}
		if ag.SpoolDepth > 0 && ag.OldestUnsentMS > AgentSpoolAgeLimit.Milliseconds() {
			spooling++
		}
	}
	if lagging > 0 {
		h.Status = HealthDegraded
		h.Reasons = append(h.Reasons, plural(lagging, "connected agent")+" with collection lag over "+FormatDuration(AgentLagLimit))
	}
	if spooling > 0 {
		h.Status = HealthDegraded
		h.Reasons = append(h.Reasons, plural(spooling, "connected agent")+" with an unacknowledged batch older than "+FormatDuration(AgentSpoolAgeLimit))
	}
}

func plural(n int, what string) string {
	s := strconv.Itoa(n) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}

type storageTable struct {
	Name       string     `json:"name"`
	Resolution string     `json:"resolution"`
	Bytes      int64      `json:"bytes"`
	Rows       int64      `json:"rows"`
	Partitions int        `json:"partitions"`
	Oldest     *time.Time `json:"oldest"`
	Newest     *time.Time `json:"newest"`
}

func (h *systemResource) storage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	size, err := h.a.system.DatabaseSize(ctx)
	if err != nil {
		return err
	}
	usage, err := h.a.system.Storage(ctx)
	if err != nil {
		return err
	}
	tables := make([]storageTable, 0, len(usage))
	for _, u := range usage {
		tables = append(tables, storageTable{Name: u.Name, Resolution: string(u.Resolution), Bytes: u.Bytes, Rows: u.Rows,
			Partitions: u.Partitions, Oldest: utcPtr(u.Oldest), Newest: utcPtr(u.Newest)})
	}
	// Biggest first: what an operator looks for.
	slices.SortFunc(tables, func(a, b storageTable) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.Name, b.Name))
	})
	writeData(w, r, http.StatusOK, map[string]any{"database_bytes": size, "tables": tables})
	return nil
}
