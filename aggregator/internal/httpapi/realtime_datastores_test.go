package httpapi

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestRealtimeOverviewDatastores: the overview's datastores closest to
// full, against real PostgreSQL: a falling free space trend over the last
// days gives days to full (the alert engine's least-squares rule), a rising
// or flat one null; ordered by days to full then used percent; a user
// scoped to dc-east never sees dc-west's datastores.
func TestRealtimeOverviewDatastores(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory() // dc-east's ds1: 1 TiB, half free, no history
	ctx := context.Background()
	const gib = 1 << 30
	for _, ds := range []struct {
		site, source, moref, name string
		capacity, free            float64
		// history is free space 3, 2 and 1 days ago.
		history []float64
	}{
		{"dc-east", vcEast, "datastore-2", "fill", 1000 * gib, 100 * gib, []float64{400 * gib, 300 * gib, 200 * gib}},
		{"dc-east", vcEast, "datastore-3", "grow", 1000 * gib, 200 * gib, []float64{50 * gib, 100 * gib, 150 * gib}},
		{"dc-west", vcWest, "datastore-9", "west", 100 * gib, 2.5 * gib, []float64{17.5 * gib, 12.5 * gib, 7.5 * gib}},
	} {
		if _, err := e.store.Pool().Exec(ctx, `INSERT INTO inventory_objects (site, source, kind, moref, name, path, props, first_seen, observed_at)
			VALUES ($1, $2, 'datastore', $3, $4, '/Datacenters/DC/datastore/' || $4, jsonb_build_object('capacity', $5::float8, 'free', $6::float8), now(), now())`,
			ds.site, ds.source, ds.moref, ds.name, ds.capacity, ds.free); err != nil {
			t.Fatal(err)
		}
		for i, free := range ds.history {
			at := time.Now().Add(-time.Duration(3-i) * 24 * time.Hour)
			if _, err := e.store.Pool().Exec(ctx, `INSERT INTO inventory_changes (site, source, kind, moref, op, changes, observed_at)
				VALUES ($1, $2, 'datastore', $3, 'update', jsonb_build_object('props.free', jsonb_build_object('new', $4::float8)), $5)`,
				ds.site, ds.source, ds.moref, free, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func(token string) []OverviewDatastore {
		t.Helper()
		res := e.do("GET", "/api/v1/realtime/overview", token, "")
		if res.status != 200 {
			t.Fatalf("overview: %d %s", res.status, res.raw)
		}
		var o Overview
		res.data(&o)
		return o.Datastores
	}
	names := func(list []OverviewDatastore) []string {
		var out []string
		for _, d := range list {
			out = append(out, d.Site+"/"+d.Name)
		}
		return out
	}
	near := func(d *float64, want float64) bool { return d != nil && math.Abs(*d-want) < 0.01 }

	all := get(e.tokens["viewer"])
	if got := names(all); len(got) != 4 || got[0] != "dc-west/west" || got[1] != "dc-east/fill" || got[2] != "dc-east/grow" || got[3] != "dc-east/ds1" {
		t.Fatalf("order = %v", got)
	}
	// west: 2.5 GiB free, falling 5 GiB a day: half a day; fill: 100 GiB
	// falling 100 GiB a day: one day; grow's free space rises and ds1 has
	// no history: no days, by used percent.
	w, f, g, d1 := all[0], all[1], all[2], all[3]
	if !near(w.DaysToFull, 0.5) || w.UsedPercent != 97.5 || w.Capacity != 100*gib || w.Free != 5*gib/2 || w.ID != vcWest+":datastore-9" {
		t.Fatalf("west = %+v (days %v)", w, deref64(w.DaysToFull))
	}
	if !near(f.DaysToFull, 1) || f.UsedPercent != 90 || f.ID != vcEast+":datastore-2" {
		t.Fatalf("fill = %+v (days %v)", f, deref64(f.DaysToFull))
	}
	if g.DaysToFull != nil || g.UsedPercent != 80 {
		t.Fatalf("grow (rising free space) = %+v", g)
	}
	if d1.DaysToFull != nil || d1.UsedPercent != 50 {
		t.Fatalf("ds1 (no history) = %+v", d1)
	}

	east, _ := e.scopedToken("east-viewer", "dc-east")
	if got := names(get(east)); len(got) != 3 || got[0] != "dc-east/fill" || got[1] != "dc-east/grow" || got[2] != "dc-east/ds1" {
		t.Fatalf("dc-east user sees %v", got)
	}
	west, _ := e.scopedToken("west-viewer", "dc-west")
	if got := names(get(west)); len(got) != 1 || got[0] != "dc-west/west" {
		t.Fatalf("dc-west user sees %v", got)
	}
}
