package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
)

func (e *env) waitBackup(token, id string) backup.Backup {
	e.t.Helper()
	var b backup.Backup
	eventually(e.t, "backup "+id, func() bool {
		res := e.do("GET", "/api/v1/backups/"+id, token, "")
		res.data(&b)
		return b.Status != backup.StatusRunning
	})
	return b
}

type restoreStatus struct {
	Restore *struct {
		backup.Restore
		ETASeconds *int64 `json:"eta_seconds"`
	} `json:"restore"`
	Maintenance backup.Maintenance `json:"maintenance"`
}

func (e *env) waitRestore(token string, phases ...string) restoreStatus {
	e.t.Helper()
	var rs restoreStatus
	eventually(e.t, "restore phase "+strings.Join(phases, "/"), func() bool {
		res := e.do("GET", "/api/v1/backups/restore", token, "")
		rs = restoreStatus{}
		res.data(&rs)
		if rs.Restore == nil {
			return false
		}
		for _, p := range phases {
			if rs.Restore.Phase == p {
				return true
			}
		}
		return false
	})
	return rs
}

// TestBackupsAPI: a backup made through the API, listed, downloaded whole
// and resumed with Range, scheduled (with validation and an audited
// before/after diff), restored in maintenance mode (every other route
// answers 503 MAINTENANCE, localized; the restore's status is served), and
// deleted.
func TestBackupsAPI(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	if res := e.do("POST", "/api/v1/backups", admin, `{"kind":"metrics"}`); res.status != 422 || !strings.Contains(string(res.raw), `"from"`) {
		t.Errorf("metrics without a range: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/backups", admin, `{"kind":"everything"}`); res.status != 422 {
		t.Errorf("bad kind: %d %s", res.status, res.raw)
	}
	res := e.do("POST", "/api/v1/backups", admin, `{"kind":"config","note":"before the upgrade"}`)
	if res.status != 202 {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	var b backup.Backup
	res.data(&b)
	if b.Status != backup.StatusRunning || b.CreatedBy != "admin" || b.Note != "before the upgrade" {
		t.Errorf("created: %+v", b)
	}
	b = e.waitBackup(admin, b.ID.String())
	if b.Status != backup.StatusDone || b.SizeBytes == 0 {
		t.Fatalf("backup: %+v", b)
	}
	res = e.do("GET", "/api/v1/backups", admin, "")
	if res.status != 200 || !strings.Contains(string(res.raw), b.ID.String()) || !strings.Contains(string(res.raw), `"total":1`) {
		t.Errorf("list: %d %s", res.status, res.raw)
	}

	// Download, whole and resumed.
	res = e.do("GET", "/api/v1/backups/"+b.ID.String()+"/download", admin, "")
	sum := sha256.Sum256(res.raw)
	if res.status != 200 || int64(len(res.raw)) != b.SizeBytes || hex.EncodeToString(sum[:]) != b.SHA256 ||
		!strings.Contains(res.header.Get("Content-Disposition"), "attachment") || res.header.Get("ETag") != `"`+b.SHA256+`"` {
		t.Fatalf("download: %d, %d bytes, headers %v", res.status, len(res.raw), res.header)
	}
	whole := res.raw
	res = e.do("GET", "/api/v1/backups/"+b.ID.String()+"/download", admin, "", "Range", "bytes=100-", "If-Range", `"`+b.SHA256+`"`)
	if res.status != 206 || string(res.raw) != string(whole[100:]) {
		t.Errorf("resumed download: %d, %d bytes", res.status, len(res.raw))
	}
	res = e.do("GET", "/api/v1/backups/"+b.ID.String()+"/download", admin, "", "Range", "bytes=100-", "If-Range", `"stale"`)
	if res.status != 200 || len(res.raw) != len(whole) {
		t.Errorf("download with a stale If-Range must send everything: %d, %d bytes", res.status, len(res.raw))
	}

	// Schedule.
	res = e.do("PUT", "/api/v1/backups/schedule", admin, `{"cron":"61 * * * *","keep_last":-1}`)
	if res.status != 422 || !strings.Contains(string(res.raw), `"cron"`) || !strings.Contains(string(res.raw), `"keep_last"`) {
		t.Errorf("bad schedule: %d %s", res.status, res.raw)
	}
	res = e.do("PUT", "/api/v1/backups/schedule", admin, `{"enabled":true,"cron":"0 4 * * *","keep_last":5}`)
	var sc scheduleData
	res.data(&sc)
	if res.status != 200 || !sc.Enabled || sc.Cron != "0 4 * * *" || sc.KeepLast != 5 || sc.NextRunAt == nil || sc.NextRunAt.Hour() != 4 || sc.UpdatedBy != "admin" {
		t.Errorf("schedule: %d %s", res.status, res.raw)
	}
	res = e.do("GET", "/api/v1/system/jobs/backup", admin, "")
	if !strings.Contains(string(res.raw), `"schedule":"0 4 * * *"`) {
		t.Errorf("the backup job did not take the schedule: %s", res.raw)
	}
	e.flushAudit()
	var summary string
	if err := e.pool.QueryRow(context.Background(), `SELECT summary FROM audit_log WHERE action = 'backup.schedule.update' AND status = 200`).Scan(&summary); err != nil {
		t.Fatal(err)
	}
	var diff struct {
		Changes map[string]struct{ Before, After any } `json:"changes"`
	}
	_ = json.Unmarshal([]byte(summary), &diff)
	if c := diff.Changes["cron"]; c.Before != "0 3 * * *" || c.After != "0 4 * * *" || diff.Changes["enabled"].After != true || len(diff.Changes) != 3 {
		t.Errorf("audited diff: %s", summary)
	}

	// Restore, held in maintenance mode.
	e.do("POST", "/api/v1/vm-groups", admin, `{"name":"made-after-the-backup"}`)
	hold := make(chan struct{})
	e.ops.hold.Store(&hold)
	res = e.do("POST", "/api/v1/backups/"+b.ID.String()+"/restore", admin, "")
	if res.status != 202 {
		t.Fatalf("restore: %d %s", res.status, res.raw)
	}
	rs := e.waitRestore(admin, backup.PhaseRestoring)
	if !rs.Maintenance.Active || rs.Maintenance.RestoreID == nil || *rs.Maintenance.RestoreID != rs.Restore.ID {
		t.Errorf("maintenance during the restore: %+v", rs.Maintenance)
	}
	res = e.do("GET", "/api/v1/vm-groups", admin, "", "Accept-Language", "ja")
	if res.status != 503 || res.code() != CodeMaintenance || res.env.Message != messages[CodeMaintenance][LangJA] ||
		!strings.Contains(string(res.raw), "/api/v1/backups/restore") {
		t.Errorf("a route during the restore: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/auth/login", "", `{"username":"admin","password":"`+goodPassword+`"}`); res.status != 503 {
		t.Errorf("login during the restore: %d", res.status)
	}
	close(hold)
	rs = e.waitRestore(admin, backup.PhaseDone, backup.PhaseFailed)
	if rs.Restore.Phase != backup.PhaseDone || rs.Maintenance.Active || rs.Restore.PausedMS == nil {
		t.Fatalf("after the restore: %+v", rs)
	}
	// The admin existed at the backup: its session goes on.
	res = e.do("GET", "/api/v1/vm-groups", admin, "")
	if res.status != 200 || strings.Contains(string(res.raw), "made-after-the-backup") {
		t.Errorf("after the restore: %d %s", res.status, res.raw)
	}

	// Delete.
	if res := e.do("DELETE", "/api/v1/backups/"+b.ID.String(), admin, ""); res.status != 200 {
		t.Errorf("delete: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/backups/"+b.ID.String(), admin, ""); res.status != 404 || res.code() != backup.CodeNotFound {
		t.Errorf("after delete: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/backups/not-a-uuid/download", admin, ""); res.status != 404 {
		t.Errorf("bad id: %d", res.status)
	}
}

// TestBackupRestoreRefusals: a dump cut short is refused at once with a
// localized BACKUP_CHECKSUM_MISMATCH; one altered in place is refused by
// its checksum in the background, before maintenance; both are audited and
// degrade /system/health with their code.
func TestBackupRestoreRefusals(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	ctx := context.Background()
	b, err := e.ops.backups.Create(ctx, backup.Request{Kind: backup.KindConfig, By: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	path := e.ops.backups.Path(b)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, orig[:len(orig)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	res := e.do("POST", "/api/v1/backups/"+b.ID.String()+"/restore", admin, "", "Accept-Language", "zh-CN")
	if res.status != 409 || res.code() != backup.CodeChecksum || res.env.Message != messages[backup.CodeChecksum][LangZH] {
		t.Errorf("truncated dump: %d %s", res.status, res.raw)
	}
	altered := append([]byte(nil), orig...)
	altered[len(altered)/3] ^= 0x55
	if err := os.WriteFile(path, altered, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := e.do("POST", "/api/v1/backups/"+b.ID.String()+"/restore", admin, ""); res.status != 202 {
		t.Fatalf("altered dump: %d %s", res.status, res.raw)
	}
	rs := e.waitRestore(admin, backup.PhaseFailed, backup.PhaseDone)
	if rs.Restore.Phase != backup.PhaseFailed || rs.Restore.ErrorCode != backup.CodeChecksum || rs.Restore.PausedMS != nil {
		t.Errorf("altered dump: %+v", rs.Restore)
	}
	res = e.do("GET", "/api/v1/system/health", admin, "")
	var h Health
	res.data(&h)
	if h.Status != HealthDegraded || h.Components.Backups == nil || h.Components.Backups.Status != HealthDegraded ||
		len(h.Components.Backups.Problems) == 0 || h.Components.Backups.Problems[0].Code != backup.CodeChecksum {
		t.Errorf("health after a refused restore: %s", res.raw)
	}
	e.flushAudit()
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'backup.restore'`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d restore requests audited, want 2 (%v)", n, err)
	}
}

// TestBackupsScope: a backup holds every site and a restore rewrites them,
// so an administrator whose data scope is limited to some sites may not
// list, make, download, schedule or restore backups.
func TestBackupsScope(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"east-admin","password":"`+goodPassword+`","roles":["admin"]}`)
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-east"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	scoped := e.login("east-admin").AccessToken
	b, err := e.ops.backups.Create(context.Background(), backup.Request{Kind: backup.KindConfig})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/backups", ""}, {"POST", "/backups", `{"kind":"config"}`}, {"GET", "/backups/schedule", ""},
		{"PUT", "/backups/schedule", `{"enabled":true}`}, {"GET", "/backups/restore", ""}, {"GET", "/backups/" + b.ID.String(), ""},
		{"GET", "/backups/" + b.ID.String() + "/download", ""}, {"POST", "/backups/" + b.ID.String() + "/restore", ""},
		{"DELETE", "/backups/" + b.ID.String(), ""},
	} {
		if res := e.do(c.method, "/api/v1"+c.path, scoped, c.body); res.status != 403 || res.code() != CodeScopeRestricted {
			t.Errorf("%s %s by a scoped admin: %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	if res := e.do("GET", "/api/v1/backups/"+b.ID.String(), admin, ""); res.status != 200 {
		t.Errorf("the backup is gone or changed: %d", res.status)
	}
}
