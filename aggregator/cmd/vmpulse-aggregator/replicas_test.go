package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// startReplica runs a whole aggregator (ingest, API, jobs, …) on dsn, with
// the CA in dataDir, until the test ends.
func startReplica(t *testing.T, dsn, dataDir, name string) (*aggregator.Aggregator, aggregator.Config) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yml")
	yml := fmt.Sprintf("database_url: %s\ndata_dir: %s\ningest:\n  listen: 127.0.0.1:0\n  server_names: [localhost, 127.0.0.1]\nhttp:\n  listen: 127.0.0.1:0\n", dsn, dataDir)
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := aggregator.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := aggregator.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a, cfg
}

// call sends an API request to a replica and decodes the envelope's data.
func call(t *testing.T, a *aggregator.Aggregator, method, path, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.HTTPAddr().String()+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	raw, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(raw, &env); err != nil || json.Unmarshal(env.Data, out) != nil {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, raw)
		}
	}
	return res.StatusCode
}

// TestReplicasActAsOne runs two aggregators on one database. An agent is
// connected to replica B; through replica A's API a site resync reaches it
// and a revocation closes its connection at once; both replicas list
// themselves in /system/info, and /system/health is the deployment's.
func TestReplicasActAsOne(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	dataDir := t.TempDir() // the CA, shared as replicas share it
	a, cfgA := startReplica(t, dsn, dataDir, "a")
	b, _ := startReplica(t, dsn, dataDir, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := auth.CreateAdmin(ctx, a.Store.Pool(), "admin", "admin@example.com", "correct horse battery staple 1"); err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if code := call(t, a, "POST", "/auth/login", "", `{"username":"admin","password":"correct horse battery staple 1"}`, &tok); code != 200 {
		t.Fatalf("login on A: %d", code)
	}

	// The agent enrolls and connects through replica B.
	enroll, _, err := aggregator.IssueEnrollToken(ctx, cfgA, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	id, err := ingesttest.Enroll(ctx, b.IngestAddr().String(), enroll, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ingesttest.Dial(ctx, b.IngestAddr().String(), id, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Replica B's relay listens from its start; allow it a moment.
	var resync struct {
		Notified int      `json:"agents_notified"`
		Agents   []string `json:"agents"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code := call(t, a, "POST", "/sites/dc1/resync", tok.AccessToken, "", &resync)
		if code == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resync through A: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resync.Notified != 1 || resync.Agents[0] != id.AgentID {
		t.Fatalf("resync through A: %+v", resync)
	}
	_ = conn.Control.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := protocol.ReadMessage(conn.Control)
	if err != nil {
		t.Fatalf("the agent on B got no command: %v", err)
	}
	if c, ok := m.(*protocol.Command); !ok || c.Name != "resync_inventory" {
		t.Fatalf("the agent on B got %#v", m)
	}

	// Both replicas list themselves, from either one.
	var info struct {
		Replicas []struct {
			State      string `json:"state"`
			IngestAddr string `json:"ingest_addr"`
			HTTPAddr   string `json:"http_addr"`
			Version    string `json:"version"`
		} `json:"replicas"`
	}
	if code := call(t, b, "GET", "/system/info", tok.AccessToken, "", &info); code != 200 {
		t.Fatalf("info on B: %d", code)
	}
	seen := map[string]bool{}
	for _, r := range info.Replicas {
		if r.State == "live" && r.Version != "" {
			seen[r.IngestAddr+" "+r.HTTPAddr] = true
		}
	}
	for _, x := range []*aggregator.Aggregator{a, b} {
		if !seen[x.IngestAddr().String()+" "+x.HTTPAddr().String()] {
			t.Errorf("/system/info on B does not list replica %s/%s as live: %+v", x.IngestAddr(), x.HTTPAddr(), info.Replicas)
		}
	}
	var health struct {
		Components struct {
			Deployment struct {
				Status       string `json:"status"`
				ReplicasLive int    `json:"replicas_live"`
			} `json:"deployment"`
		} `json:"components"`
	}
	if code := call(t, a, "GET", "/system/health", tok.AccessToken, "", &health); code != 200 ||
		health.Components.Deployment.ReplicasLive != 2 || health.Components.Deployment.Status != "ok" {
		t.Errorf("health on A: %d %+v", code, health.Components.Deployment)
	}

	// Revocation through A closes the connection on B at once (the
	// heartbeat check would take up to 10 s; the agent sends none here).
	revoked := time.Now()
	if code := call(t, a, "DELETE", "/agents/"+id.AgentID, tok.AccessToken, "", nil); code != 200 && code != 204 {
		t.Fatalf("revoke through A: %d", code)
	}
	select {
	case <-conn.QUIC.Context().Done():
		t.Logf("revocation through A closed the agent's connection to B in %s", time.Since(revoked).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's connection to B is open 5 s after its revocation through A")
	}
}
