package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
)

// TestSettingsAPI: the retention in effect comes from the configuration
// until set; a change is validated with field errors, audited with its
// before/after difference, and applied by the retention job — which reads
// it from the database at every run, on whichever replica runs it — at
// once.
func TestSettingsAPI(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	if res := e.do("GET", "/api/v1/system/settings", e.tokens["operator"], ""); res.status != 403 {
		t.Errorf("settings for an operator: %d", res.status)
	}
	res := e.do("GET", "/api/v1/system/settings", admin, "")
	var s Settings
	res.data(&s)
	if res.status != 200 || s.Retention["raw"] != "168h" || s.Retention["1d"] != "0s" || s.Sources["retention"] != "config" || s.UpdatedAt != nil {
		t.Fatalf("settings: %d %s", res.status, res.raw)
	}
	for body, field := range map[string]string{
		`{"retention":{"raw":"24h"}}`:    "retention.raw",
		`{"retention":{"5m":"10x"}}`:     "retention.5m",
		`{"retention":{"1h":"100h"}}`:    "retention.1h",
		`{}`:                             "retention",
		`{"retention":{"raw":"-5h"}}`:    "retention.raw",
		`{"retention":{"raw":"1e9h"}}`:   "retention.raw",
		`{"retention":{"2h":"1h"}}`:      "2h",
		`{"retention":{"raw":"0s"}}`:     "retention.5m",
		`{"retention":{"1d":"100000h"}}`: "",
	} {
		res := e.do("PUT", "/api/v1/system/settings", admin, body)
		if field == "" {
			if res.status != 200 {
				t.Errorf("%s: %d %s", body, res.status, res.raw)
			}
			continue
		}
		if res.status != 422 || !strings.Contains(string(res.raw), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s, want 422 on %s", body, res.status, res.raw, field)
		}
	}
	e.ops.start()
	res = e.do("PUT", "/api/v1/system/settings", admin, `{"retention":{"raw":"240h","5m":"720h"}}`)
	res.data(&s)
	if res.status != 200 || s.Retention["raw"] != "240h" || s.Retention["5m"] != "720h" || s.Retention["1d"] != "100000h" ||
		s.Sources["retention"] != "settings" || s.UpdatedBy != "admin" || s.Version != 2 {
		t.Fatalf("after the change: %d %s", res.status, res.raw)
	}
	// The retention job runs at once, with the new values.
	var detail struct {
		Runs []jobs.RunRecord `json:"runs"`
	}
	eventually(t, "the retention job with the new setting", func() bool {
		res := e.do("GET", "/api/v1/system/jobs/retention", admin, "")
		res.data(&detail)
		return len(detail.Runs) > 0 && strings.Contains(strings.ReplaceAll(string(detail.Runs[0].Summary), " ", ""), `"keep":"240h0m0s"`)
	})
	e.flushAudit()
	var summary string
	if err := e.pool.QueryRow(context.Background(), `SELECT summary FROM audit_log WHERE action = 'settings.update' AND status = 200 ORDER BY seq DESC LIMIT 1`).
		Scan(&summary); err != nil {
		t.Fatal(err)
	}
	var diff struct {
		Changes map[string]struct {
			Before, After map[string]string
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(summary), &diff); err != nil {
		t.Fatal(err)
	}
	if c := diff.Changes["retention"]; c.Before["raw"] != "168h" || c.After["raw"] != "240h" || c.After["5m"] != "720h" {
		t.Errorf("audited diff: %s", summary)
	}
}

// TestSettingsRefusedToScopedCaller: every settings group acts on the
// whole fleet (retention deletes every site's history, collection settings
// reach every agent), so a caller whose data scope is limited to some
// sites changes none of them, even with the admin role; nothing is stored
// and the refusal is audited.
func TestSettingsRefusedToScopedCaller(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory() // sites dc-east and dc-west
	east := e.scopedUser("east-admin", `["admin"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	before := e.do("GET", "/api/v1/system/settings", e.tokens["admin"], "")
	for i, body := range []string{
		`{"collection":{"realtime_interval":"300s","counters":{"vm":["cpu.usage.average"]}}}`,
		`{"retention":{"raw":"48h"}}`,
		`{"backup":{"compression":1}}`,
	} {
		id := fmt.Sprintf("req-scoped-settings-%d", i)
		res := e.do("PUT", "/api/v1/system/settings", east, body, "X-Request-ID", id)
		if res.status != 403 || res.code() != CodeScopeRestricted {
			t.Errorf("scoped PUT %s = %d %s; want 403 %s", body, res.status, res.raw, CodeScopeRestricted)
		}
		if recs := e.auditRecords(id); len(recs) != 1 || recs[0].Status != 403 || recs[0].Action != "settings.update" {
			t.Errorf("audit of the refused PUT %s: %+v", body, recs)
		}
	}
	if after := e.do("GET", "/api/v1/system/settings", e.tokens["admin"], ""); string(after.raw) != string(before.raw) {
		t.Errorf("settings changed by refused writes:\nbefore %s\nafter  %s", before.raw, after.raw)
	}
	// The unrestricted administrator still can.
	if res := e.do("PUT", "/api/v1/system/settings", e.tokens["admin"], `{"collection":{"realtime_interval":"40s"}}`); res.status != 200 {
		t.Errorf("admin PUT = %d %s", res.status, res.raw)
	}
}
