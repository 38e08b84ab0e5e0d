package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

// The operator's revocation path: list the agents, revoke one by ID (with
// an audit record), and get clear errors for bad IDs.
func TestAgentListAndRevoke(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "aggregator.yml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("database_url: %s\ndata_dir: %s\n", dsn, filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := store.AllSites(context.Background())
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Enroll(ctx, secret, "esx-site-1", "1.2.3", func(string, string) (string, time.Time, error) {
		return "1f", time.Now().Add(365 * 24 * time.Hour), nil
	})
	if err != nil {
		t.Fatal(err)
	}

	agents, err := st.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printAgents(&out, agents, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), a.ID) || !strings.Contains(out.String(), "esx-site-1") || !strings.Contains(out.String(), "never") {
		t.Fatalf("agent list:\n%s", out.String())
	}
	if err := run([]string{"agent", "list", "-config", cfgPath}); err != nil {
		t.Fatalf("agent list: %v", err)
	}

	for _, bad := range []string{"not-a-uuid", "00000000-0000-0000-0000-000000000000"} {
		if err := run([]string{"agent", "revoke", "-config", cfgPath, bad}); err == nil || !strings.Contains(err.Error(), "no such agent") {
			t.Errorf("revoke %q: %v", bad, err)
		}
	}
	if err := run([]string{"agent", "revoke", "-config", cfgPath}); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("revoke without an ID: %v", err)
	}
	if err := run([]string{"agent", "revoke", "-config", cfgPath, "-reason", "host decommissioned", a.ID}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	got, err := st.AgentByID(ctx, a.ID)
	if err != nil || got.RevokedAt == nil {
		t.Fatalf("after revoke: %+v %v", got, err)
	}
	recs, _, err := audit.NewStore(st.Pool()).Query(ctx, audit.Filter{Action: "agent.revoke", ResourceID: a.ID})
	if err != nil || len(recs) != 1 || !strings.Contains(string(recs[0].Summary), "host decommissioned") {
		t.Fatalf("audit record: %+v %v", recs, err)
	}
	out.Reset()
	agents, _ = st.Agents(ctx)
	if err := printAgents(&out, agents, time.Now()); err != nil || !strings.Contains(out.String(), "revoked") {
		t.Fatalf("agent list after revoke:\n%s %v", out.String(), err)
	}
}
