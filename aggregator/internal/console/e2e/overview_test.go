package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// seedDatastoreTrend gives dc-east's ds1 (1 TiB, 512 GiB free) a week of
// falling free space, 100 GiB a day over the last 3 days as the agent's
// inventory changes record it (5.12 days to full), and adds ds2, 10 % used
// with no history (no days to full).
func seedDatastoreTrend(t *testing.T, ctx context.Context, st *store.Store) {
	t.Helper()
	const gib = 1 << 30
	for i, free := range []float64{812 * gib, 712 * gib, 612 * gib} {
		at := time.Now().Add(-time.Duration(3-i) * 24 * time.Hour)
		if _, err := st.Pool().Exec(ctx, `INSERT INTO inventory_changes (site, source, kind, moref, op, changes, observed_at)
			VALUES ('dc-east', $1, 'datastore', 'datastore-1', 'update', jsonb_build_object('props.free', jsonb_build_object('new', $2::float8)), $3)`,
			vcEast, free, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Pool().Exec(ctx, `INSERT INTO inventory_objects (site, source, kind, moref, name, path, props, first_seen, observed_at)
		VALUES ('dc-east', $1, 'datastore', 'datastore-2', 'ds2', '/Datacenters/DC1/datastore/ds2',
		        jsonb_build_object('capacity', $2::float8, 'free', $3::float8), now(), now())`, vcEast, float64(1<<40), float64(1<<40)*0.9); err != nil {
		t.Fatal(err)
	}
}

// checkOverviewAttention checks the overview's active alerts by severity
// (against the alerts table) and its datastores closest to full.
func checkOverviewAttention(t *testing.T, ctx context.Context, b *browser, st *store.Store) {
	t.Helper()
	want := map[string]string{"critical": "0", "warning": "0", "info": "0"}
	rows, err := st.Pool().Query(ctx, `SELECT severity, count(*)::text FROM alerts WHERE state IN ('firing', 'unknown') GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for rows.Next() {
		var sev, n string
		if err := rows.Scan(&sev, &n); err != nil {
			t.Fatal(err)
		}
		want[sev] = n
		if n != "0" {
			active++
		}
	}
	rows.Close()
	got := run(b, "overview alerts", chromedp.Evaluate[struct {
		Counts map[string]string `json:"counts"`
		Links  map[string]string `json:"links"`
		Unack  string            `json:"unack"`
		Supp   string            `json:"supp"`
	}](`(() => { const s = document.querySelector('[data-testid=overview-alerts]'); const counts = {}, links = {};
		for (const li of s?.querySelectorAll('[data-severity]') ?? []) { counts[li.dataset.severity] = li.dataset.count; links[li.dataset.severity] = li.querySelector('a')?.getAttribute('href') ?? ''; }
		return {counts, links, unack: s?.querySelector('[data-field=unacknowledged]')?.dataset.count ?? '', supp: s?.querySelector('[data-field=suppressed]')?.dataset.count ?? ''}; })()`))
	b.check("overview alerts by severity", active > 0 && len(got.Counts) == 3 && got.Counts["critical"] == want["critical"] &&
		got.Counts["warning"] == want["warning"] && got.Counts["info"] == want["info"] && got.Unack != "" && got.Supp != "",
		"overview alerts %+v, want counts %v (at least one active)", got, want)
	b.check("overview alert links", got.Links["critical"] == "/alerts?severity=critical" && got.Links["warning"] == "/alerts?severity=warning",
		"severity links %v", got.Links)

	ds := run(b, "overview datastores", chromedp.Evaluate[[]map[string]string](`[...document.querySelectorAll('[data-testid=overview-datastores] tr[data-datastore]')].map(r =>
		({name: r.dataset.datastore, days: r.dataset.days, href: r.querySelector('a')?.getAttribute('href') ?? '', text: r.innerText}))`))
	b.check("overview datastores", len(ds) == 2 && ds[0]["name"] == "ds1" && ds[0]["days"] == "5.1" && strings.Contains(ds[0]["text"], "5.1") &&
		strings.HasPrefix(ds[0]["href"], "/datastores#") && ds[1]["name"] == "ds2" && ds[1]["days"] == "" && strings.Contains(ds[1]["text"], "—"),
		"overview datastores %v: want ds1 full in 5.1 days, then ds2 with no trend (—)", ds)
}
