package httpapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

func TestSystemInfo(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/api/v1/system/info", e.tokens["operator"], "")
	if res.status != 200 {
		t.Fatalf("info = %d %s", res.status, res.raw)
	}
	var info systemInfoData
	res.data(&info)
	if info.Version != "1.2.3-test" || !strings.HasPrefix(info.GoVersion, "go") || info.UptimeSeconds != 3600 || info.Uptime != "1h0m0s" {
		t.Errorf("info = %+v", info)
	}
	if info.Database.ServerVersion == "" || info.Database.Timescale != e.store.Timescale() {
		t.Errorf("database = %+v", info.Database)
	}
	c := info.Config
	if c.IngestListen != ":7443" || c.HeartbeatInterval != "10s" || c.AgentCertLifetime != "720h" || c.Retention["1d"] != "0s" ||
		c.HTTPListen != Defaults().Listen {
		t.Errorf("config = %+v", c)
	}
	// No secret: neither a database URL nor a password.
	lower := strings.ToLower(string(res.raw))
	for _, bad := range []string{"postgres://", "password", "database_url", "secret"} {
		if strings.Contains(lower, bad) {
			t.Errorf("info mentions %q: %s", bad, res.raw)
		}
	}
}

func TestLdflagsVersion(t *testing.T) {
	cases := map[string]string{
		`-X main.version=1.4.0`:               "1.4.0",
		`-s -w -X main.version=v2.0.0-rc1`:    "v2.0.0-rc1",
		`-X=main.version=3.1 -X main.other=x`: "3.1",
		`-X 'main.version=9.9'`:               "9.9",
		`-s -w`:                               "",
		`-X main.versionx=1`:                  "",
	}
	for flags, want := range cases {
		if got, _ := ldflagsVersion(flags); got != want {
			t.Errorf("ldflagsVersion(%q) = %q; want %q", flags, got, want)
		}
	}
	if b := ReadBuild(); b.Version == "" || b.GoVersion == "" {
		t.Errorf("ReadBuild = %+v", b)
	}
	for d, want := range map[time.Duration]string{10 * time.Second: "10s", 720 * time.Hour: "720h", 90 * time.Minute: "1h30m", 0: "0s", 5 * time.Minute: "5m"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q; want %q", d, got, want)
		}
	}
}

func (e *env) health() (int, Health) {
	e.t.Helper()
	res := e.do("GET", "/api/v1/system/health", e.tokens["operator"], "")
	var h Health
	res.data(&h)
	if res.status == 503 && res.code() != CodeUnavailable {
		e.t.Errorf("503 with code %s", res.code())
	}
	return res.status, h
}

func TestSystemHealth(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	a := e.enrollAgent("dc-east", "a")
	b := e.enrollAgent("dc-east", "b")
	rv := e.enrollAgent("dc-west", "revoked")
	e.enrollAgent("dc-west", "never")
	e.connectAgent(a, &protocol.Heartbeat{SpoolDepth: 3, OldestUnsentAge: 2000, CollectionLag: 20000})
	e.connectAgent(b, &protocol.Heartbeat{SpoolDepth: 1, OldestUnsentAge: 500, CollectionLag: 40000})
	if err := e.store.RevokeAgent(store.AllSites(ctx), rv.ID); err != nil {
		t.Fatal(err)
	}

	// All well.
	status, h := e.health()
	c := h.Components
	if status != 200 || h.Status != HealthOK || c.Database.Status != HealthOK || c.Ingest.Status != HealthOK ||
		c.Agents.Status != HealthOK || c.Storage.Status != HealthOK {
		t.Fatalf("health = %d %+v", status, h)
	}
	if c.Agents.Registered != 4 || c.Agents.Connected != 2 || c.Agents.Revoked != 1 || c.Agents.MaxCollectionLagMS != 40000 ||
		c.Agents.MaxOldestUnsentMS != 2000 || c.Agents.SpoolDepth != 4 || len(c.Agents.Reasons) != 0 {
		t.Errorf("agents = %+v", c.Agents)
	}
	if c.Ingest.BatchesStored != 7 || c.Ingest.BatchesDuplicate != 1 || !c.Ingest.Listening || c.Storage.DatabaseBytes <= 0 || c.Database.LatencyMS <= 0 {
		t.Errorf("ingest %+v storage %+v database %+v", c.Ingest, c.Storage, c.Database)
	}

	// A connected agent lagging over 5 minutes: degraded, still 200.
	e.connectAgent(b, &protocol.Heartbeat{SpoolDepth: 1, OldestUnsentAge: 500, CollectionLag: 6 * 60 * 1000})
	status, h = e.health()
	if status != 200 || h.Status != HealthDegraded || h.Components.Agents.Status != HealthDegraded ||
		len(h.Components.Agents.Reasons) != 1 || !strings.Contains(h.Components.Agents.Reasons[0], "collection lag over 5m") {
		t.Errorf("lagging agent: %d %+v", status, h)
	}
	// A spool holding a batch for over 5 minutes too.
	e.connectAgent(a, &protocol.Heartbeat{SpoolDepth: 3, OldestUnsentAge: 10 * 60 * 1000, CollectionLag: 1000})
	if _, h = e.health(); len(h.Components.Agents.Reasons) != 2 || h.Status != HealthDegraded {
		t.Errorf("spooling agent: %+v", h.Components.Agents)
	}
	// A revoked or disconnected agent's old heartbeat does not count.
	for _, ag := range []string{a.ID, b.ID} {
		if err := e.store.RevokeAgent(store.AllSites(ctx), ag); err != nil {
			t.Fatal(err)
		}
	}
	if _, h = e.health(); h.Status != HealthOK || h.Components.Agents.Connected != 0 {
		t.Errorf("after revoking the laggards: %+v", h)
	}

	// Ingest not listening: degraded.
	e.ingest.set(IngestStats{})
	if status, h = e.health(); status != 200 || h.Status != HealthDegraded || h.Components.Ingest.Status != HealthDown {
		t.Errorf("ingest down: %d %+v", status, h)
	}

	// The database down: 503, the document still in the body.
	e.api.ready = func(context.Context) error { return errors.New("connection refused") }
	status, h = e.health()
	if status != 503 || h.Status != HealthDown || h.Components.Database.Status != HealthDown || h.Components.Database.Error == "" ||
		strings.Contains(h.Components.Database.Error, "refused") {
		t.Errorf("database down: %d %+v", status, h)
	}
}

func TestSystemStorage(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	a := e.enrollAgent("dc1", "a")
	d := time.Now().UTC().Truncate(24 * time.Hour).Add(-48 * time.Hour)
	counters := []protocol.Counter{{Name: "cpu", Unit: "%"}}
	series := protocol.SeriesData{Key: protocol.SeriesKey{Source: "vc1", EntityKind: "vm", EntityID: "vm-1", Counters: counters},
		Timestamps: []int64{d.Add(time.Minute).UnixMilli(), d.Add(25 * time.Hour).UnixMilli()}, Values: [][]float64{{1, 2}}}
	if _, err := e.store.WriteSamples(ctx, store.BatchMeta{AgentID: a.ID, Site: "dc1", Epoch: 1, Seq: 1, Kind: protocol.KindSamples}, &protocol.Samples{Series: []protocol.SeriesData{series}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RunRollups(ctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	res := e.do("GET", "/api/v1/system/storage", e.tokens["operator"], "")
	if res.status != 200 {
		t.Fatalf("storage = %d %s", res.status, res.raw)
	}
	var doc struct {
		DatabaseBytes int64          `json:"database_bytes"`
		Tables        []storageTable `json:"tables"`
	}
	res.data(&doc)
	by := map[string]storageTable{}
	for i, tb := range doc.Tables {
		by[tb.Name] = tb
		if strings.HasPrefix(tb.Name, "samples_p") {
			t.Errorf("partition %s listed", tb.Name)
		}
		if i > 0 && tb.Bytes > doc.Tables[i-1].Bytes {
			t.Errorf("not biggest first: %s after %s", tb.Name, doc.Tables[i-1].Name)
		}
	}
	if doc.DatabaseBytes <= 0 || len(doc.Tables) < 10 {
		t.Errorf("database_bytes %d, %d tables", doc.DatabaseBytes, len(doc.Tables))
	}
	raw := by["samples"]
	if raw.Resolution != "raw" || raw.Rows != 2 || raw.Bytes <= 0 || raw.Oldest == nil || !raw.Oldest.Equal(d.Add(time.Minute)) ||
		raw.Newest == nil || !raw.Newest.Equal(d.Add(25*time.Hour)) {
		t.Errorf("samples = %+v", raw)
	}
	if d1 := by["samples_1d"]; d1.Resolution != "1d" || d1.Oldest == nil || !d1.Oldest.Equal(d) || !d1.Newest.Equal(d.Add(24*time.Hour)) {
		t.Errorf("samples_1d = %+v", d1)
	}
	for _, name := range []string{"samples_5m", "samples_1h", "inventory_objects", "vcenter_events", "audit_log", "ingest_ledger"} {
		if _, ok := by[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	if al := by["audit_log"]; al.Resolution != "" || al.Oldest != nil {
		t.Errorf("audit_log = %+v", al)
	}
	if !strings.Contains(string(res.raw), `"oldest":null`) {
		t.Error("a table that is not a tier must have oldest null")
	}
}
