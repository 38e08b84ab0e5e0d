package httpapi

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
)

// vCenter events in the operation log: filtered with source=vcenter, in
// the CSV export, and the chain verifies; a bad source is a field error.
func TestAuditLogsVCenterSource(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	pool := e.store.Pool()
	if _, err := pool.Exec(ctx, `
		INSERT INTO vcenter_events (site, source, key, type, time, username, message, entity_kind, entity_id, entity_name, received_at)
		VALUES ('dc-east', 'vc-uuid-1', 7, 'VmPoweredOffEvent', '2026-01-02T03:04:05Z', 'VSPHERE.LOCAL\alice', 'DC0_H0_VM0 on host is powered off',
		        'vm', 'vm-42', 'DC0_H0_VM0', now() - interval '1 minute'),
		       ('dc-east', 'vc-uuid-1', 8, 'UserLoginSessionEvent', '2026-01-02T03:05:00Z', 'VSPHERE.LOCAL\bob', 'User bob logged in',
		        '', '', '', now() - interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.AppendVCenterEvents(ctx, pool, audit.VCenterOptions{}); err != nil || rep.Appended != 2 || rep.Pending != 0 {
		t.Fatalf("append = %+v, %v", rep, err)
	}
	// An API record too, which the filter leaves out.
	e.do("GET", "/api/v1/audit-logs?source=bogus", e.tokens["auditor"], "")
	e.flushAudit()

	var recs cursorOf[audit.Record]
	res := e.do("GET", "/api/v1/audit-logs?source=vcenter", e.tokens["auditor"], "")
	if res.status != 200 {
		t.Fatalf("source=vcenter: %d %s", res.status, res.raw)
	}
	res.data(&recs)
	if len(recs.Items) != 2 {
		t.Fatalf("source=vcenter: %d records: %s", len(recs.Items), res.raw)
	}
	off := recs.Items[1] // newest first
	if off.Source != "vcenter" || off.Action != "vcenter.VmPoweredOffEvent" || off.ActorName != `VSPHERE.LOCAL\alice` ||
		off.ResourceType != "vm" || off.ResourceID != "vc-uuid-1:vm-42" || off.Time.Format("2006-01-02T15:04:05Z07:00") != "2026-01-02T03:04:05Z" ||
		!strings.Contains(string(off.Summary), `"site":"dc-east"`) {
		t.Errorf("power-off record = %+v %s", off, off.Summary)
	}
	var byActor cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?source=vcenter&action=vcenter.UserLoginSessionEvent", e.tokens["auditor"], "").data(&byActor)
	if len(byActor.Items) != 1 || byActor.Items[0].ActorName != `VSPHERE.LOCAL\bob` {
		t.Errorf("login event: %+v", byActor.Items)
	}

	csv := e.do("GET", "/api/v1/audit-logs/export?source=vcenter", e.tokens["auditor"], "")
	if csv.status != 200 || strings.Count(string(csv.raw), "vcenter.") != 2 || strings.Contains(string(csv.raw), "audit-logs") {
		t.Errorf("export: %d %s", csv.status, csv.raw)
	}
	var v audit.VerifyResult
	e.do("GET", "/api/v1/audit-logs/verify", e.tokens["auditor"], "").data(&v)
	if !v.OK || v.Checked < 3 {
		t.Errorf("verify = %+v", v)
	}

	bad := e.do("GET", "/api/v1/audit-logs?source=bogus", e.tokens["auditor"], "")
	if f := bad.fieldErrors(); bad.status != 422 || len(f) != 1 || f[0].Field != "source" {
		t.Errorf("source=bogus: %d %s", bad.status, bad.raw)
	}
}

// vCenter events are site data: a caller whose scope is one site sees only
// that site's events in the list and the export, and another site's event
// answers 404 like a missing record; API records stay visible.
func TestAuditLogsVCenterScope(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	pool := e.store.Pool()
	if _, err := pool.Exec(ctx, `
		INSERT INTO vcenter_events (site, source, key, type, time, username, message, received_at)
		VALUES ('dc-east', 'vc-e', 1, 'VmPoweredOffEvent', '2026-01-02T03:04:05Z', 'east-user', 'east event', now() - interval '1 minute'),
		       ('dc-west', 'vc-w', 1, 'VmPoweredOnEvent', '2026-01-02T03:04:06Z', 'west-user', 'west event', now() - interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.AppendVCenterEvents(ctx, pool, audit.VCenterOptions{}); err != nil || rep.Appended != 2 {
		t.Fatalf("append = %+v, %v", rep, err)
	}
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"west-auditor","password":"`+goodPassword+`","roles":["admin"]}`)
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-west"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	scoped := e.login("west-auditor").AccessToken
	e.flushAudit()

	var all, mine cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?source=vcenter", admin, "").data(&all)
	e.do("GET", "/api/v1/audit-logs?limit=500", scoped, "").data(&mine)
	if len(all.Items) != 2 {
		t.Fatalf("unrestricted caller: %d vCenter records, want 2", len(all.Items))
	}
	var east int64
	sawAPI := false
	for _, r := range all.Items {
		if site, _ := r.VCenterSite(); site == "dc-east" {
			east = r.Seq
		}
	}
	for _, r := range mine.Items {
		if site, ok := r.VCenterSite(); ok && site != "dc-west" {
			t.Errorf("scoped caller sees %s's vCenter record %d", site, r.Seq)
		}
		if r.Source == "api" {
			sawAPI = true
		}
	}
	if !sawAPI {
		t.Error("scoped caller sees no API record")
	}
	vc := 0
	for _, r := range mine.Items {
		if _, ok := r.VCenterSite(); ok {
			vc++
		}
	}
	if vc != 1 {
		t.Errorf("scoped caller sees %d vCenter records, want 1 (dc-west's)", vc)
	}
	csv := e.do("GET", "/api/v1/audit-logs/export?source=vcenter", scoped, "")
	if csv.status != 200 || strings.Contains(string(csv.raw), "east event") || !strings.Contains(string(csv.raw), "west event") {
		t.Errorf("scoped export: %d %s", csv.status, csv.raw)
	}
	if res := e.do("GET", "/api/v1/audit-logs/"+strconv.FormatInt(east, 10), scoped, ""); res.status != 404 || res.code() != CodeAuditNotFound {
		t.Errorf("another site's vCenter record: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/audit-logs/"+strconv.FormatInt(east, 10), admin, ""); res.status != 200 {
		t.Errorf("unrestricted caller, the same record: %d %s", res.status, res.raw)
	}
}
