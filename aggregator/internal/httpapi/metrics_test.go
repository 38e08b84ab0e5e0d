package httpapi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/protocol"
)

// scrape GETs /metrics with token (may be "") and returns the response.
func (e *env) scrape(token string) *response {
	e.t.Helper()
	return e.do("GET", "/metrics", token, "")
}

func wantMetricLines(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, l) {
			t.Errorf("/metrics lacks %q", l)
		}
	}
}

func TestMetricsExposition(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Metrics.Auth = MetricsAuthNone })
	a := e.enrollAgent("dc1", "agent-one")
	e.connectAgent(a, &protocol.Heartbeat{SpoolDepth: 3, SpoolBytes: 4096, OldestUnsentAge: 1500, CollectionLag: 2500, Dropped: 2})
	e.cmds.set(a.ID)
	e.ingest.set(IngestStats{Listening: true, BatchesStored: 11, BatchesDuplicate: 2, BatchesRejected: 1, SamplesStored: 999, StoreRetries: 4, StreamsRefused: 5})

	// Some API traffic: ids in paths must not become labels.
	tok := e.tokens["admin"]
	for range 2 {
		if res := e.do("GET", "/api/v1/agents/"+a.ID, tok, ""); res.status != 200 {
			t.Fatalf("get agent: %d %s", res.status, res.raw)
		}
	}
	if res := e.do("GET", "/api/v1/agents/00000000-0000-0000-0000-000000000000", tok, ""); res.status != 404 {
		t.Fatalf("get unknown agent: %d", res.status)
	}
	e.do("GET", "/no/such/path", "", "")

	res := e.scrape("")
	if res.status != 200 {
		t.Fatalf("/metrics: %d %s", res.status, res.raw)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	body := string(res.raw)
	wantMetricLines(t, body,
		`vmpulse_http_requests_total{code="200",method="GET",route="/api/v1/agents/{id}"} 2`,
		`vmpulse_http_requests_total{code="404",method="GET",route="/api/v1/agents/{id}"} 1`,
		`vmpulse_http_requests_total{code="200",method="POST",route="/api/v1/auth/login"}`,
		`vmpulse_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`vmpulse_http_request_duration_seconds_count{method="GET",route="/api/v1/agents/{id}"} 3`,
		"vmpulse_ingest_batches_stored_total 11",
		"vmpulse_ingest_batches_duplicate_total 2",
		"vmpulse_ingest_batches_rejected_total 1",
		"vmpulse_ingest_samples_stored_total 999",
		"vmpulse_ingest_store_retries_total 4",
		"vmpulse_ingest_streams_refused_total 5",
		"vmpulse_ingest_listening 1",
		"vmpulse_ingest_connected_agents 1",
		"vmpulse_agents_scrape_error 0",
		`vmpulse_agent_connected{agent="agent-one",agent_id="`+a.ID+`",site="dc1"} 1`,
		`vmpulse_agent_spool_depth{agent="agent-one",agent_id="`+a.ID+`",site="dc1"} 3`,
		`vmpulse_agent_spool_bytes{agent="agent-one",agent_id="`+a.ID+`",site="dc1"} 4096`,
		`vmpulse_agent_oldest_unsent_seconds{agent="agent-one",agent_id="`+a.ID+`",site="dc1"} 1.5`,
		`vmpulse_agent_collection_lag_seconds{agent="agent-one",agent_id="`+a.ID+`",site="dc1"} 2.5`,
		`vmpulse_agent_dropped_batches{agent="agent-one",agent_id="`+a.ID+`",site="dc1"} 2`,
		"vmpulse_db_pool_acquired_conns",
		"vmpulse_db_pool_idle_conns",
		"vmpulse_db_pool_total_conns",
		"vmpulse_db_pool_max_conns",
		"vmpulse_audit_records_written_total",
		"go_goroutines",
		"process_start_time_seconds",
	)
	if strings.Contains(body, `route="/api/v1/agents/`+a.ID) || strings.Contains(body, "/no/such/path") {
		t.Error("a raw path became a route label")
	}
}

func TestMetricsAgentsDBErrorDoesNotFailTheScrape(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Metrics.Auth = MetricsAuthNone })
	a := e.enrollAgent("dc1", "agent-one")
	e.agents.failAgents(errors.New("connection refused"))
	res := e.scrape("")
	if res.status != 200 {
		t.Fatalf("/metrics with a failing registry: %d %s", res.status, res.raw)
	}
	body := string(res.raw)
	wantMetricLines(t, body, "vmpulse_agents_scrape_error 1", "vmpulse_ingest_batches_stored_total 7", "vmpulse_db_pool_max_conns")
	if strings.Contains(body, a.ID) {
		t.Error("agent series exported despite the error")
	}
	e.agents.failAgents(nil)
	wantMetricLines(t, string(e.scrape("").raw), "vmpulse_agents_scrape_error 0")
}

func TestMetricsAuthTokenFile(t *testing.T) {
	const secret = "scrape-secret-0123456789"
	path := filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Metrics.TokenFile = path })
	for _, tok := range []string{"", "wrong-token-0123456789", e.tokens["admin"]} {
		if res := e.scrape(tok); res.status != 401 || res.code() != CodeUnauthenticated {
			t.Errorf("token %.8q…: %d %s; want 401", tok, res.status, res.code())
		}
	}
	if res := e.scrape(secret); res.status != 200 || !strings.Contains(string(res.raw), "vmpulse_ingest_batches_stored_total 7") {
		t.Errorf("right token: %d %.200s", res.status, res.raw)
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Error("the scrape token was logged")
	}
}

func TestMetricsAuthAPIToken(t *testing.T) {
	e := newEnv(t, nil) // defaults: auth token, no token_file
	if res := e.scrape(""); res.status != 401 {
		t.Errorf("no token: %d; want 401", res.status)
	}
	if res := e.scrape("garbage"); res.status != 401 {
		t.Errorf("bad token: %d; want 401", res.status)
	}
	if res := e.scrape(e.tokens["viewer"]); res.status != 403 {
		t.Errorf("viewer (no system:read): %d; want 403", res.status)
	}
	for _, role := range []string{"operator", "admin"} {
		if res := e.scrape(e.tokens[role]); res.status != 200 || !strings.Contains(string(res.raw), "vmpulse_http_requests_total") {
			t.Errorf("%s: %d; want 200 with metrics", role, res.status)
		}
	}
}

func TestMetricsAuthNoneAndDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Metrics.Auth = MetricsAuthNone })
	if res := e.scrape(""); res.status != 200 {
		t.Errorf("auth none: %d", res.status)
	}
	off := false
	e = newEnv(t, func(c *Config) { c.Metrics.Enabled = &off })
	if res := e.scrape(e.tokens["admin"]); res.status != 404 {
		t.Errorf("disabled: %d; want 404", res.status)
	}
}

func TestMetricsConfig(t *testing.T) {
	cases := []struct {
		mutate func(*Config)
		field  string
	}{
		{func(c *Config) { c.Metrics.Auth = "basic" }, "metrics.auth"},
		{func(c *Config) { c.Metrics.Auth, c.Metrics.TokenFile = MetricsAuthNone, "/etc/tok" }, "metrics.token_file"},
	}
	for _, c := range cases {
		cfg := Defaults()
		c.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("Validate = %v; want an error naming %s", err, c.field)
		}
	}
	// Zero values take the defaults: enabled, auth token.
	m := Config{}.WithDefaults().Metrics
	if !m.On() || m.Auth != MetricsAuthToken || m.TokenFile != "" {
		t.Errorf("defaults: %+v", m)
	}
	off := false
	if (Config{Metrics: MetricsConfig{Enabled: &off}}).WithDefaults().Metrics.On() {
		t.Error("enabled: false was overridden by the default")
	}
	// An unreadable or short token file stops New.
	for _, content := range []string{"", "short"} {
		path := filepath.Join(t.TempDir(), "tok")
		if content != "" {
			os.WriteFile(path, []byte(content), 0o600)
		}
		if _, err := readMetricsToken(path); err == nil || !strings.Contains(err.Error(), "metrics.token_file") {
			t.Errorf("token file %q: %v; want an error naming metrics.token_file", content, err)
		}
	}
}
