package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// TestAgentVCentersAndSpoolQuotaOnGet: what the alert engine reads of the
// heartbeat (the spool's quota, each vCenter's reachability) is on GET
// /agents/{id} and in the list, times in UTC or null, error texts cleaned
// of NUL and invalid UTF-8; an agent that does not report a quota shows
// null, one without endpoints an empty list. The OpenAPI document
// describes both.
func TestAgentVCentersAndSpoolQuotaOnGet(t *testing.T) {
	e := newEnv(t, nil)
	op := e.tokens["operator"]
	a := e.enrollAgent("dc-east", "alpha")
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.connectAgent(a, &protocol.Heartbeat{SpoolBytes: 800, SpoolMaxBytes: 1000, VCenters: []protocol.VCenterStatus{
		{Source: vcEast, Reachable: true, Since: since.UnixMilli(), LastOK: since.Add(time.Hour).UnixMilli()},
		{Source: "esx-lab", Reachable: false, Since: since.UnixMilli(), LastError: "x509: certificate\x00 signed by unknown authority \xff"},
	}})
	res := e.do("GET", "/api/v1/agents/"+a.ID, op, "")
	if res.status != 200 {
		t.Fatalf("get = %d %s", res.status, res.raw)
	}
	var got Agent
	res.data(&got)
	if got.SpoolMaxBytes == nil || *got.SpoolMaxBytes != 1000 || got.SpoolBytes != 800 || len(got.VCenters) != 2 {
		t.Fatalf("agent = %s", res.raw)
	}
	v, w := got.VCenters[0], got.VCenters[1]
	if v.Source != vcEast || !v.Reachable || v.Since == nil || !v.Since.Equal(since) || v.LastOK == nil || !v.LastOK.Equal(since.Add(time.Hour)) || v.LastError != "" {
		t.Errorf("reachable endpoint = %+v", v)
	}
	if w.Reachable || w.LastOK != nil || w.LastError != "x509: certificate\uFFFD signed by unknown authority \uFFFD" {
		t.Errorf("unreachable endpoint = %+v", w)
	}
	if !strings.Contains(string(res.raw), `"since":"2026-01-02T03:04:05Z"`) || !strings.Contains(string(res.raw), `"last_ok":null`) {
		t.Errorf("times not RFC 3339 UTC or null: %s", res.raw)
	}
	var page pageOf[Agent]
	e.do("GET", "/api/v1/agents", op, "").data(&page)
	if len(page.Items) != 1 || len(page.Items[0].VCenters) != 2 || page.Items[0].SpoolMaxBytes == nil {
		t.Errorf("list = %+v", page.Items)
	}
	// An agent older than the fields.
	if _, err := e.store.AgentHeartbeat(context.Background(), a.ID, &protocol.Heartbeat{SpoolBytes: 5}); err != nil {
		t.Fatal(err)
	}
	res = e.do("GET", "/api/v1/agents/"+a.ID, op, "")
	if !strings.Contains(string(res.raw), `"spool_max_bytes":null`) || !strings.Contains(string(res.raw), `"vcenters":[]`) {
		t.Errorf("after an older agent's heartbeat: %s", res.raw)
	}
	doc := string(e.do("GET", "/api/v1/openapi.json", op, "").raw)
	for _, s := range []string{`"AgentVCenter"`, `"spool_max_bytes"`, `"vcenters"`, `"consolidation_needed"`} {
		if !strings.Contains(doc, s) {
			t.Errorf("the OpenAPI document lacks %s", s)
		}
	}
}
