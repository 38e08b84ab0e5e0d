package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type fixture struct {
	t      testing.TB
	st     *store.Store
	pool   *pgxpool.Pool
	svc    *backup.Service
	audits *auditLog
}

// auditLog collects the service's audit records, and passes them on to a
// real writer once one is set.
type auditLog struct {
	recs chan audit.Record
	fwd  atomic.Pointer[audit.Writer]
}

func (a *auditLog) add(ctx context.Context, r audit.Record) {
	if w := a.fwd.Load(); w != nil {
		_ = w.Append(ctx, r)
	}
	select {
	case a.recs <- r:
	default:
	}
}

// last returns the records received so far.
func (a *auditLog) drain() []audit.Record {
	var out []audit.Record
	for {
		select {
		case r := <-a.recs:
			out = append(out, r)
		default:
			return out
		}
	}
}

func newFixture(t testing.TB, mutate func(*backup.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return attach(t, st, mutate)
}

// attach makes a backup service (a replica) on st's database.
func attach(t testing.TB, st *store.Store, mutate func(*backup.Options)) *fixture {
	t.Helper()
	al := &auditLog{recs: make(chan audit.Record, 100)}
	opts := backup.Options{Dir: t.TempDir(), Compression: 1, Logger: testLogger(t), Audit: al.add, PollInterval: 50 * time.Millisecond,
		PauseTimeout: 10 * time.Second}
	if mutate != nil {
		mutate(&opts)
	}
	svc, err := backup.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &fixture{t: t, st: st, pool: st.Pool(), svc: svc, audits: al}
}

// watch runs the service's maintenance watcher until the test ends.
func (f *fixture) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.svc.Watch(ctx)
	}()
	f.t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) count(sql string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// snapshot is every row of the tables, as text, in order.
func (f *fixture) snapshot(tables ...string) map[string][]string {
	f.t.Helper()
	out := map[string][]string{}
	for _, t := range tables {
		rows, err := f.pool.Query(context.Background(), `SELECT x::text FROM `+t+` x ORDER BY 1`)
		if err != nil {
			f.t.Fatalf("snapshot %s: %v", t, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				f.t.Fatal(err)
			}
			out[t] = append(out[t], s)
		}
		rows.Close()
	}
	return out
}

func diffSnapshots(t testing.TB, want, got map[string][]string) {
	t.Helper()
	for table, rows := range want {
		if !slices.Equal(rows, got[table]) {
			t.Errorf("%s after restore:\n got  %q\n want %q", table, got[table], rows)
		}
	}
}

// configTables are the tables a configuration restore makes equal to the
// backup; the logs (audit_log, audit_chain, login_log) are evidence and
// are never rewound (TestLogsNeverRewound).
var configTables = []string{"roles", "role_permissions", "role_parents", "users", "user_roles", "api_tokens", "vm_groups", "alert_rules",
	"notification_channels", "alert_silences", "vm_group_members", "vm_user_fields", "settings"}

// seedConfig writes a little of everything a configuration backup holds;
// the audit records go through the real, hash-chained writer.
func (f *fixture) seedConfig(ctx context.Context, w *audit.Writer, tag string, n int) {
	f.t.Helper()
	for i := 0; i < n; i++ {
		u := uuid.New()
		f.exec(`INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')`, u, tag+"-user-"+string(rune('a'+i)), tag+string(rune('a'+i))+"@example.com")
		r := uuid.New()
		f.exec(`INSERT INTO roles (id, name) VALUES ($1, $2)`, r, tag+"-role-"+string(rune('a'+i)))
		f.exec(`INSERT INTO role_permissions (role_id, permission) VALUES ($1, 'vm:read')`, r)
		f.exec(`INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)`, u, r)
		g := uuid.New()
		f.exec(`INSERT INTO vm_groups (id, name, rule) VALUES ($1, $2, '{"site":"dc1"}')`, g, tag+"-group-"+string(rune('a'+i)))
		f.exec(`INSERT INTO vm_group_members (group_id, site, source, moref) VALUES ($1, 'dc1', 'vc1', 'vm-1')`, g)
		f.exec(`INSERT INTO login_log (time, username, result) VALUES (now(), $1, 'success')`, tag)
		if err := w.Append(ctx, audit.Record{Time: time.Now(), Source: "api", ActorType: "user", ActorName: tag, Action: "user.create",
			Result: audit.ResultSuccess, Status: 201}); err != nil {
			f.t.Fatal(err)
		}
	}
	f.exec(`INSERT INTO settings (key, value) VALUES ($1, '{"x":1}') ON CONFLICT (key) DO UPDATE SET value = '{"x":2}'`, "k-"+tag)
	if err := w.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// TestConfigBackupRestore: backup → change the configuration (rows added,
// changed, deleted; the audit chain extended) → restore → every
// configuration table equals the backup, the audit chain verifies and
// extends, sequences continue, and sessions of users the restore kept
// survive while those of users it removed end.
func TestConfigBackupRestore(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	w := audit.NewWriter(f.pool, audit.WriterOptions{Logger: testLogger(t)})
	defer w.Close(ctx)
	f.audits.fwd.Store(w)
	f.seedConfig(ctx, w, "before", 3)
	keptUser := uuid.New()
	f.exec(`INSERT INTO users (id, username, password_hash) VALUES ($1, 'kept', 'x')`, keptUser)
	f.exec(`INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, now(), now(), now() + interval '1 day')`, uuid.New(), keptUser)
	want := f.snapshot(configTables...)

	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig, By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != backup.StatusDone || b.SizeBytes == 0 || len(b.SHA256) != 64 || b.SchemaVersion != backup.SchemaVersion() ||
		b.CreatedBy != "alice" || b.DurationMS == nil || !slices.Contains(b.Tables, "public.users") {
		t.Fatalf("backup: %+v", b)
	}
	if fi, err := os.Stat(f.svc.Path(b)); err != nil || fi.Size() != b.SizeBytes || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dump file: %v %v", fi, err)
	}
	if n := f.count(`SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'vmpulse_backup_%'`); n != 0 {
		t.Errorf("%d staging schemas left", n)
	}

	// Change everything.
	f.seedConfig(ctx, w, "after", 2)
	f.exec(`DELETE FROM users WHERE username = 'before-user-a'`)
	f.exec(`UPDATE vm_groups SET description = 'changed' WHERE name = 'before-group-b'`)
	f.exec(`DELETE FROM role_permissions WHERE role_id = (SELECT id FROM roles WHERE name = 'before-role-c')`)
	goneUser := uuid.New()
	f.exec(`INSERT INTO users (id, username, password_hash) VALUES ($1, 'gone', 'x')`, goneUser)
	f.exec(`INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, now(), now(), now() + interval '1 day')`, uuid.New(), goneUser)
	if diff := f.snapshot("users"); slices.Equal(diff["users"], want["users"]) {
		t.Fatal("the change did not change anything")
	}

	r, err := f.svc.RestoreNow(ctx, b.ID, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != backup.PhaseDone || r.BytesDone != b.SizeBytes || r.PausedMS == nil || r.ErrorCode != "" {
		t.Errorf("restore: %+v", r)
	}
	diffSnapshots(t, want, f.snapshot(configTables...))
	// The logs keep what happened since the backup (the log held every
	// record of the dump, so nothing was rewritten).
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count(`SELECT count(*) FROM audit_log WHERE actor_name = 'after'`); n != 2 {
		t.Errorf("%d audit records made after the backup survived, want 2", n)
	}
	if n := f.count(`SELECT count(*) FROM login_log WHERE username = 'after'`); n != 2 {
		t.Errorf("%d login records made after the backup survived, want 2", n)
	}
	if n := f.count(`SELECT count(*) FROM audit_log WHERE summary LIKE '%reappended_after_restore%'`); n != 0 {
		t.Errorf("%d records re-appended though the log held the dump's", n)
	}
	if n := f.count(`SELECT count(*) FROM sessions WHERE user_id = $1`, keptUser); n != 1 {
		t.Errorf("the kept user's session: %d", n)
	}
	if n := f.count(`SELECT count(*) FROM sessions WHERE user_id = $1`, goneUser); n != 0 {
		t.Errorf("the removed user's session survived")
	}
	// The chain verifies and goes on from the restored head.
	if err := w.Append(ctx, audit.Record{Time: time.Now(), Source: "api", ActorType: "user", ActorName: "x", Action: "after.restore",
		Result: audit.ResultSuccess, Status: 200}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := audit.NewStore(f.pool).Verify(ctx)
	if err != nil || !res.OK {
		t.Errorf("audit chain after restore: %+v %v", res, err)
	}
	// The identity sequence is past the restored rows.
	f.exec(`INSERT INTO login_log (time, username, result) VALUES (now(), 'next', 'success')`)
	if m := f.svc.Maintenance(); m.Active {
		t.Errorf("still in maintenance: %+v", m)
	}
	if got, err := f.svc.LastRestore(ctx); err != nil || got.ID != r.ID {
		t.Errorf("LastRestore = %+v %v", got, err)
	}
	recs := f.audits.drain()
	var actions []string
	for _, rec := range recs {
		actions = append(actions, rec.Action+":"+rec.Result)
	}
	if !slices.Contains(actions, "backup.create:success") || !slices.Contains(actions, "backup.restore:success") {
		t.Errorf("audited: %v", actions)
	}
}

// writeSamples stores points 20 s apart for vms VMs from start.
func (f *fixture) writeSamples(ctx context.Context, site string, vms, points int, start time.Time, seq uint64) {
	f.t.Helper()
	p := ingesttest.Samples("vc-"+site, vms, points, start.UnixMilli(), seq)
	if _, err := f.st.WriteSamples(ctx, store.BatchMeta{AgentID: uuid.NewString(), Site: site, Epoch: 1, Seq: seq, Kind: protocol.KindSamples}, p); err != nil {
		f.t.Fatal(err)
	}
}

// TestMetricsBackupRestore: a metrics backup of one day restores that
// day's raw samples and rollups exactly (even after retention dropped the
// partition), adds back series it lost, and leaves other days alone.
func TestMetricsBackupRestore(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	day1 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	day2 := day1.AddDate(0, 0, 1)
	f.writeSamples(ctx, "dc1", 5, 60, day1.Add(6*time.Hour), 1)
	f.writeSamples(ctx, "dc1", 5, 60, day2.Add(6*time.Hour), 2)
	if _, err := f.st.RunRollups(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	day1Rows := func() map[string][]string {
		out := map[string][]string{}
		for _, tbl := range []string{"samples", "samples_5m", "samples_1h", "samples_1d"} {
			rows, err := f.pool.Query(ctx, `SELECT x::text FROM `+tbl+` x WHERE ts >= $1 AND ts < $2 ORDER BY 1`, day1, day2)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				_ = rows.Scan(&s)
				out[tbl] = append(out[tbl], s)
			}
			rows.Close()
		}
		return out
	}
	want := day1Rows()
	// The hourly tier's packed read copy (store/packed.go) is not in the
	// dump: a restore must forget it over the range, or history would read
	// the copy of the hours the restore replaced.
	hourly := func() store.RangeResult {
		t.Helper()
		res, err := f.st.QueryRange(access.AllSites(ctx), store.RangeQuery{EntityKind: "vm", EntityID: "vm-1000", From: day1, To: day2, Step: time.Hour, Agg: store.AggSum})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	packedDay1 := func() int64 {
		return f.count(`SELECT count(*) FROM samples_1h_days WHERE day = $1::date`, day1)
	}
	if packedDay1() == 0 {
		t.Fatal("seed: day 1 of the hourly tier was not packed by the rollups")
	}
	wantHourly := hourly()
	if len(wantHourly.Series) == 0 || wantHourly.Resolution != store.Resolution1h {
		t.Fatalf("seed: hourly history of day 1: %d series at %v", len(wantHourly.Series), wantHourly.Resolution)
	}
	if len(want["samples"]) != 300 || len(want["samples_5m"]) == 0 {
		t.Fatalf("seed: %d raw, %d 5m rows", len(want["samples"]), len(want["samples_5m"]))
	}
	series := f.snapshot("series")
	day2Before := f.count(`SELECT count(*) FROM samples WHERE ts >= $1`, day2)

	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindMetrics, From: day1.Add(3 * time.Hour), To: day1.Add(20 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !b.From.Equal(day1) || !b.To.Equal(day2) {
		t.Errorf("range %v..%v, want whole day %v..%v", b.From, b.To, day1, day2)
	}
	partition := "public.samples_p" + day1.Format("20060102")
	if !slices.Contains(b.Tables, partition) || slices.Contains(b.Tables, "public.samples_p"+day2.Format("20060102")) {
		t.Errorf("tables: %v", b.Tables)
	}

	// Lose day 1 (retention), a series, and change day 2.
	f.exec(`DROP TABLE ` + partition)
	f.exec(`DELETE FROM samples_5m WHERE ts >= $1 AND ts < $2 AND series_id = (SELECT min(id) FROM series)`, day1, day2)
	f.exec(`UPDATE samples_1h SET vcnt = '{0}' WHERE ts >= $1 AND ts < $2`, day1, day2)
	f.exec(`DELETE FROM series WHERE id = (SELECT max(id) FROM series)`)
	// ...and let the rollup job repack day 1 from the changed hours, so its
	// packed copy now disagrees with the backup.
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ForgetPackedRange(ctx, tx, day1, day2); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.PackHours(ctx, time.Now(), 3); err != nil {
		t.Fatal(err)
	}
	if got := hourly(); reflect.DeepEqual(got, wantHourly) {
		t.Fatal("the change after the backup did not reach the hourly history")
	}
	f.writeSamples(ctx, "dc1", 7, 10, day2.Add(12*time.Hour), 3)
	day2After := f.count(`SELECT count(*) FROM samples WHERE ts >= $1`, day2)

	if _, err := f.svc.RestoreNow(ctx, b.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	diffSnapshots(t, want, day1Rows())
	if n := packedDay1(); n != 0 {
		t.Errorf("%d packed hourly rows of the restored day kept", n)
	}
	if got := hourly(); !reflect.DeepEqual(got, wantHourly) {
		t.Errorf("hourly history after the restore differs from before the backup:\n got %+v\nwant %+v", got, wantHourly)
	}
	if _, err := f.st.RunRollups(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if packedDay1() == 0 {
		t.Error("the rollups did not pack the restored day again")
	}
	if got := hourly(); !reflect.DeepEqual(got, wantHourly) {
		t.Errorf("hourly history after repacking differs from before the backup")
	}
	got := f.snapshot("series")
	for _, row := range series["series"] {
		if !slices.Contains(got["series"], row) {
			t.Errorf("series %s not restored", row)
		}
	}
	if n := f.count(`SELECT count(*) FROM samples WHERE ts >= $1`, day2); n != day2After || n == day2Before {
		t.Errorf("day 2 has %d rows after the restore, want %d (untouched)", n, day2After)
	}
	// Ingest goes on: new series get fresh ids.
	f.writeSamples(ctx, "dc1", 9, 2, day2.Add(18*time.Hour), 4)
}

// TestCorruptDumpRefused: a dump altered in place (same size) or cut
// short is refused by its checksum before the database is touched: no
// maintenance mode, the data changed after the backup stays, the refusal
// is recorded, audited and says why.
func TestCorruptDumpRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	w := audit.NewWriter(f.pool, audit.WriterOptions{Logger: testLogger(t)})
	defer w.Close(ctx)
	f.seedConfig(ctx, w, "x", 1)
	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	if err != nil {
		t.Fatal(err)
	}
	f.exec(`INSERT INTO users (id, username, password_hash) VALUES ($1, 'later', 'x')`, uuid.New())
	path := f.svc.Path(b)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.audits.drain()

	// Same size, one byte flipped in the middle.
	bad := slices.Clone(orig)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := f.svc.RestoreNow(ctx, b.ID, "bob")
	if code := backup.CodeOf(err, ""); code != backup.CodeChecksum {
		t.Fatalf("flipped byte: %v (code %q)", err, code)
	}
	if r.Phase != backup.PhaseFailed || r.ErrorCode != backup.CodeChecksum || r.PausedMS != nil {
		t.Errorf("restore record: %+v", r)
	}
	// Cut short.
	if err := os.WriteFile(path, orig[:len(orig)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.RestoreNow(ctx, b.ID, "bob")
	if code := backup.CodeOf(err, ""); code != backup.CodeChecksum {
		t.Fatalf("truncated: %v", err)
	}
	if last, err := f.svc.LastRestore(ctx); err != nil || last.ErrorCode != backup.CodeChecksum {
		t.Errorf("the refusal is not recorded: %+v %v", last, err)
	}
	if n := f.count(`SELECT count(*) FROM users WHERE username = 'later'`); n != 1 {
		t.Error("the database was touched")
	}
	if n := f.count(`SELECT generation FROM maintenance`); n != 0 {
		t.Errorf("maintenance was entered %d times", n)
	}
	failures := 0
	for _, rec := range f.audits.drain() {
		var sum map[string]any
		_ = json.Unmarshal(rec.Summary, &sum)
		if rec.Action == "backup.restore" && rec.Result == audit.ResultFailure && sum["error"] == backup.CodeChecksum {
			failures++
		}
	}
	if failures != 2 {
		t.Errorf("%d audited checksum refusals, want 2", failures)
	}
	// Put back, it restores.
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RestoreNow(ctx, b.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if n := f.count(`SELECT count(*) FROM users WHERE username = 'later'`); n != 0 {
		t.Error("the good dump did not restore")
	}
}

// TestSchemaNewerRefused: a dump whose manifest names a schema version
// beyond this binary's is refused before maintenance.
func TestSchemaNewerRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.exec(`UPDATE schema_version SET version = version + 5`)
	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	f.exec(`UPDATE schema_version SET version = version - 5`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.RestoreNow(ctx, b.ID, "bob")
	if code := backup.CodeOf(err, ""); code != backup.CodeSchemaNewer {
		t.Fatalf("restore of a newer dump: %v", err)
	}
	if n := f.count(`SELECT generation FROM maintenance`); n != 0 {
		t.Error("maintenance was entered")
	}
}

// TestRetentionDeletesOldest: with keep_last 3, the fifth backup leaves
// exactly the three newest, files and records; keep_days removes what is
// older.
func TestRetentionDeletesOldest(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	sc, err := f.svc.Schedule(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc.KeepLast, sc.KeepDays = 3, 0
	if _, err := f.svc.SetSchedule(ctx, sc, "test"); err != nil {
		t.Fatal(err)
	}
	var made []backup.Backup
	for i := 0; i < 5; i++ {
		b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig, Note: string(rune('a' + i))})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, b)
	}
	list, err := f.svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []uuid.UUID
	for _, b := range list {
		got = append(got, b.ID)
	}
	want := []uuid.UUID{made[4].ID, made[3].ID, made[2].ID}
	if !slices.Equal(got, want) {
		t.Errorf("kept %v, want the newest three %v", got, want)
	}
	for i, b := range made {
		_, err := os.Stat(f.svc.Path(b))
		if (i < 2) != errors.Is(err, os.ErrNotExist) {
			t.Errorf("file of backup %d: %v", i, err)
		}
	}
	// keep_days: the oldest kept one is made 10 days old.
	f.exec(`UPDATE backups SET started_at = now() - interval '10 days' WHERE id = $1`, made[2].ID)
	sc.KeepLast, sc.KeepDays = 0, 5
	if _, err := f.svc.SetSchedule(ctx, sc, "test"); err != nil {
		t.Fatal(err)
	}
	removed, err := f.svc.ApplyRetention(ctx)
	if err != nil || !slices.Equal(removed, []uuid.UUID{made[2].ID}) {
		t.Errorf("keep_days removed %v, %v", removed, err)
	}
}

// TestToolsMissing: without pg_dump or pg_restore, a backup and a restore
// fail with a clear code, are recorded and audited.
func TestToolsMissing(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	g := attach(t, f.st, func(o *backup.Options) { o.BinDir = empty; o.Dir = f.svc.Dir() })
	if _, err := g.svc.Create(ctx, backup.Request{Kind: backup.KindConfig}); backup.CodeOf(err, "") != backup.CodeToolMissing ||
		!strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("backup without pg_dump: %v", err)
	}
	if _, err := g.svc.StartRestore(ctx, b.ID, "bob"); backup.CodeOf(err, "") != backup.CodeToolMissing || !strings.Contains(err.Error(), "pg_restore") {
		t.Errorf("restore without pg_restore: %v", err)
	}
	if last, err := g.svc.LastRestore(ctx); err != nil || last.ErrorCode != backup.CodeToolMissing {
		t.Errorf("the refused restore is not recorded: %+v %v", last, err)
	}
	var actions []string
	for _, r := range g.audits.drain() {
		actions = append(actions, r.Action+":"+r.Result)
	}
	if !slices.Equal(actions, []string{"backup.create:failure", "backup.restore:failure"}) {
		t.Errorf("audited: %v", actions)
	}
}

// fullDisk is a dump file on a full disk.
type fullDisk struct{ f *os.File }

func (d fullDisk) Write(p []byte) (int, error) { return d.f.Write(p) }
func (d fullDisk) Close() error                { return d.f.Close() }

// TestDiskFull: a dump that cannot be written for lack of space fails with
// BACKUP_DISK_FULL, leaves no file, and says so in its record.
func TestDiskFull(t *testing.T) {
	f := newFixture(t, nil)
	backup.SetCreateFile(f.svc, func(string) (io.WriteCloser, error) {
		df, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		return fullDisk{df}, err
	})
	ctx := context.Background()
	_, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	if backup.CodeOf(err, "") != backup.CodeDiskFull {
		t.Fatalf("backup onto a full disk: %v", err)
	}
	list, _ := f.svc.List(ctx)
	if len(list) != 1 || list[0].Status != backup.StatusFailed || list[0].ErrorCode != backup.CodeDiskFull {
		t.Errorf("record: %+v", list)
	}
	ents, _ := os.ReadDir(f.svc.Dir())
	if len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
}

// TestBusy: one backup or restore at a time.
func TestBusy(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	backup.SetLoadHook(f.svc, func() { <-hold })
	f.watch()
	if _, err := f.svc.StartRestore(ctx, b.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	g := attach(t, f.st, func(o *backup.Options) { o.Dir = f.svc.Dir() })
	if _, err := g.svc.Create(ctx, backup.Request{Kind: backup.KindConfig}); backup.CodeOf(err, "") != backup.CodeBusy {
		t.Errorf("backup during a restore: %v", err)
	}
	close(hold)
	waitRestore(t, f.svc, backup.PhaseDone)
	if _, err := g.svc.Create(ctx, backup.Request{Kind: backup.KindConfig}); err != nil {
		t.Errorf("backup after the restore: %v", err)
	}
}

func waitRestore(t testing.TB, svc *backup.Service, phase string) backup.Restore {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := svc.LastRestore(context.Background())
		if err == nil && r.Phase == phase {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore: %+v %v, want phase %s", r, err, phase)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAbandonedMaintenance: a maintenance row left active by a restorer
// that died is cleared by the replicas, which resume.
func TestAbandonedMaintenance(t *testing.T) {
	f := newFixture(t, nil)
	f.exec(`UPDATE maintenance SET active = true, reason = 'restore', started_at = now(), generation = 7`)
	if err := f.svc.CheckMaintenance(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.svc.Maintenance().Active || f.count(`SELECT count(*) FROM maintenance WHERE active`) != 0 {
		t.Error("the abandoned maintenance mode was not cleared")
	}
}

// fakeIngest is another replica's ingest.
type fakeIngest struct {
	mu      sync.Mutex
	paused  bool
	pauses  int
	resumes int
}

func (f *fakeIngest) Pause(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = true
	f.pauses++
	return nil
}

func (f *fakeIngest) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = false
	f.resumes++
}

func (f *fakeIngest) state() (bool, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused, f.pauses, f.resumes
}

// TestRestorePausesIngest: during a restore a real agent connection gets
// no ack (its batch is held, nothing is committed) on this replica, the
// other replica pauses too and both APIs would answer 503; after the
// restore ingest resumes by itself and the held batch lands, once.
func TestRestorePausesIngest(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ca, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := ingest.New(ingest.Config{Addr: "127.0.0.1:0", Logger: testLogger(t)}, st, ca)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-served })

	a := attach(t, st, func(o *backup.Options) { o.Pauser = srv })
	other := &fakeIngest{}
	b2 := attach(t, st, func(o *backup.Options) { o.Pauser = other; o.Dir = a.svc.Dir() })
	a.watch()
	b2.watch()

	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	id, err := ingesttest.Enroll(ctx, addr, protocol.FormatEnrollToken(secret, ca.Cert.Raw), "agent")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ingesttest.Dial(ctx, addr, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ds, err := conn.OpenData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour).UnixMilli()
	batch := func(seq uint64) *protocol.Batch {
		return ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc1", 3, 5, start+int64(seq)*100000, seq), 1, seq)
	}
	if err := ds.Send(batch(1)); err != nil {
		t.Fatal(err)
	}
	if ack, err := ds.Recv(); err != nil || ack.Status != protocol.AckStored {
		t.Fatalf("ack 1: %+v %v", ack, err)
	}

	b, err := a.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	reached := make(chan struct{})
	backup.SetLoadHook(a.svc, func() { close(reached); <-hold })
	if _, err := a.svc.StartRestore(ctx, b.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the restore never reached its load")
	}
	if !srv.Paused() {
		t.Error("this replica's ingest is not paused")
	}
	if p, _, _ := other.state(); !p {
		t.Error("the other replica's ingest is not paused")
	}
	if !a.svc.Maintenance().Active || !b2.svc.Maintenance().Active {
		t.Errorf("maintenance as seen by the replicas: %+v, %+v", a.svc.Maintenance(), b2.svc.Maintenance())
	}

	if err := ds.Send(batch(2)); err != nil {
		t.Fatal(err)
	}
	acks := make(chan protocol.Ack, 1)
	go func() {
		ack, err := ds.Recv()
		if err != nil {
			t.Errorf("ack 2: %v", err)
		}
		acks <- ack
	}()
	select {
	case ack := <-acks:
		t.Fatalf("acknowledged during the restore: %+v", ack)
	case <-time.After(1500 * time.Millisecond):
	}
	ledger := func() int64 {
		return a.count(`SELECT count(*) FROM ingest_ledger WHERE seq = 2`)
	}
	if n := ledger(); n != 0 {
		t.Fatal("batch 2 was committed during the restore")
	}

	close(hold)
	r := waitRestore(t, a.svc, backup.PhaseDone)
	select {
	case ack := <-acks:
		if ack.Seq != 2 || ack.Status != protocol.AckStored {
			t.Errorf("ack 2 after the restore: %+v", ack)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ack after the restore: ingest did not resume")
	}
	if n := ledger(); n != 1 {
		t.Errorf("batch 2 stored %d times", n)
	}
	waitUntil(t, "the other replica resumes", func() bool { p, _, r := other.state(); return !p && r >= 1 })
	if a.svc.Maintenance().Active || b2.svc.Maintenance().Active {
		t.Error("maintenance mode did not end")
	}
	t.Logf("ingest paused for %d ms", *r.PausedMS)
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLogsNeverRewound: restoring into another database (a new install
// after losing the old one) whose operation log and login log already have
// records of their own: the dump's records come first, exactly (same
// sequence numbers and hashes), the database's own are appended again
// after them, marked, and the chain verifies; the login log has both.
func TestLogsNeverRewound(t *testing.T) {
	ctx := context.Background()
	old := newFixture(t, nil)
	wOld := audit.NewWriter(old.pool, audit.WriterOptions{Logger: testLogger(t)})
	defer wOld.Close(ctx)
	old.seedConfig(ctx, wOld, "old", 3)
	b, err := old.svc.Create(ctx, backup.Request{Kind: backup.KindConfig})
	if err != nil {
		t.Fatal(err)
	}
	oldLog := old.snapshot("audit_log", "users")

	// The new database: its installer logged in twice.
	fresh := newFixture(t, func(o *backup.Options) { o.Dir = old.svc.Dir() })
	wNew := audit.NewWriter(fresh.pool, audit.WriterOptions{Logger: testLogger(t)})
	defer wNew.Close(ctx)
	fresh.audits.fwd.Store(wNew)
	fresh.seedConfig(ctx, wNew, "new", 2)
	fresh.exec(`INSERT INTO backups (id, kind, status, file, size_bytes, sha256, schema_version, started_at, finished_at)
		SELECT $1, 'config', 'done', $2, $3, $4, $5, now(), now()`, b.ID, b.File, b.SizeBytes, b.SHA256, b.SchemaVersion)
	if _, err := fresh.svc.RestoreNow(ctx, b.ID, "installer"); err != nil {
		t.Fatal(err)
	}
	if err := wNew.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := fresh.snapshot("audit_log", "users")
	if !slices.Equal(got["users"], oldLog["users"]) {
		t.Errorf("users: %q, want %q", got["users"], oldLog["users"])
	}
	if len(got["audit_log"]) < len(oldLog["audit_log"]) || !slices.Equal(got["audit_log"][:len(oldLog["audit_log"])], oldLog["audit_log"]) {
		t.Errorf("the dump's audit records are not the head of the log")
	}
	if n := fresh.count(`SELECT count(*) FROM audit_log WHERE actor_name = 'new' AND summary LIKE '%reappended_after_restore%'`); n != 2 {
		t.Errorf("%d of the new database's 2 audit records re-appended", n)
	}
	if n := fresh.count(`SELECT count(*) FROM audit_log WHERE action = 'backup.restore' AND seq > (SELECT max(seq) FROM audit_log WHERE actor_name = 'new')`); n != 1 {
		t.Errorf("the restore's own record does not come last")
	}
	res, err := audit.NewStore(fresh.pool).Verify(ctx)
	if err != nil || !res.OK {
		t.Errorf("chain: %+v %v", res, err)
	}
	if o, n := fresh.count(`SELECT count(*) FROM login_log WHERE username = 'old'`), fresh.count(`SELECT count(*) FROM login_log WHERE username = 'new'`); o != 3 || n != 2 {
		t.Errorf("login log: %d old, %d new records; want 3 and 2", o, n)
	}
	// A second restore of the same dump changes nothing more.
	before := fresh.snapshot("login_log")
	if _, err := fresh.svc.RestoreNow(ctx, b.ID, "installer"); err != nil {
		t.Fatal(err)
	}
	if after := fresh.snapshot("login_log"); !slices.Equal(before["login_log"], after["login_log"]) {
		t.Errorf("the login log grew on a second restore")
	}
}
