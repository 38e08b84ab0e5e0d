package store_test

import (
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

func TestDatabaseInfo(t *testing.T) {
	f := newFixture(t)
	info, err := f.st.DatabaseInfo(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ServerVersion == "" || info.SizeBytes <= 0 {
		t.Errorf("info = %+v; want a server version and a size", info)
	}
	if info.Timescale != f.st.Timescale() || (info.Timescale && info.TimescaleVersion == "") {
		t.Errorf("info = %+v; timescale %v", info, f.st.Timescale())
	}
	size, err := f.st.DatabaseSize(f.ctx)
	if err != nil || size <= 0 {
		t.Errorf("DatabaseSize = %d, %v", size, err)
	}
}

func usageOf(t *testing.T, f *fixture) map[string]store.TableUsage {
	t.Helper()
	list, err := f.st.Storage(f.ctx)
	if err != nil {
		t.Fatalf("Storage: %v", err)
	}
	out := map[string]store.TableUsage{}
	for _, u := range list {
		if _, dup := out[u.Name]; dup {
			t.Errorf("table %s listed twice", u.Name)
		}
		out[u.Name] = u
	}
	for name := range out {
		if len(name) > 9 && name[:9] == "samples_p" {
			t.Errorf("partition %s listed on its own", name)
		}
	}
	return out
}

func TestStorage(t *testing.T) {
	f := newFixture(t)
	// Empty: every table is there, no tier has a time range.
	u := usageOf(t, f)
	for _, name := range []string{"samples", "samples_5m", "samples_1h", "samples_1d", "inventory_objects", "vcenter_events", "audit_log", "ingest_ledger", "agents"} {
		if _, ok := u[name]; !ok {
			t.Errorf("table %s missing from %v", name, u)
		}
	}
	for _, name := range []string{"samples", "samples_5m", "samples_1h", "samples_1d"} {
		if u[name].Oldest != nil || u[name].Newest != nil {
			t.Errorf("empty %s has range %v..%v", name, u[name].Oldest, u[name].Newest)
		}
	}
	if u["samples"].Resolution != store.ResolutionRaw || u["samples_1h"].Resolution != store.Resolution1h || u["agents"].Resolution != "" {
		t.Errorf("resolutions: samples %q, samples_1h %q, agents %q", u["samples"].Resolution, u["samples_1h"].Resolution, u["agents"].Resolution)
	}
	if !f.st.Timescale() && u["samples"].Partitions < 2 {
		t.Errorf("samples has %d partitions; want the ones created ahead", u["samples"].Partitions)
	}

	// Data over two days in two series; the range spans both.
	d := testDay()
	f.write(points("vm-1", d, []float64{10, 1, 2, 3}, []float64{3600, 1, 2, 3}))
	f.write(points("vm-2", d.Add(day), []float64{0, 1, 2, 3}, []float64{7200, 1, 2, 3}))
	f.rollup()
	if _, err := f.st.Pool().Exec(f.ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	u = usageOf(t, f)
	want := map[string][2]time.Time{
		"samples":    {d.Add(10 * time.Second), d.Add(day + 2*time.Hour)},
		"samples_5m": {d, d.Add(day + 2*time.Hour)},
		"samples_1h": {d, d.Add(day + 2*time.Hour)},
		"samples_1d": {d, d.Add(day)},
	}
	for name, w := range want {
		got := u[name]
		if got.Oldest == nil || got.Newest == nil || !got.Oldest.Equal(w[0]) || !got.Newest.Equal(w[1]) {
			t.Errorf("%s range = %v..%v; want %v..%v", name, got.Oldest, got.Newest, w[0], w[1])
		}
		if got.Bytes <= 0 {
			t.Errorf("%s bytes = %d", name, got.Bytes)
		}
	}
	if u["samples"].Rows != 4 {
		t.Errorf("samples rows = %d; want 4 after ANALYZE", u["samples"].Rows)
	}
	if u["ingest_ledger"].Rows != 2 {
		t.Errorf("ingest_ledger rows = %d; want 2 after ANALYZE", u["ingest_ledger"].Rows)
	}
	if u["samples"].Oldest.Location() != time.UTC {
		t.Error("times are not UTC")
	}
}
