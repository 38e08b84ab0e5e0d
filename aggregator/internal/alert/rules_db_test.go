package alert

import (
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// TestRuleMatchSQLAgreesWithEngine: the SQL with which a rule write
// closes the alerts its new scope no longer covers (ruleMatchSQL) decides
// as the engine's match does, for every kind of scope list, on sources
// that hold ':'.
func TestRuleMatchSQLAgreesWithEngine(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := store.AllSites(f.ctx)
	const src = "vc.a.example:443"
	for _, o := range []struct{ site, source, kind, moref, props string }{
		{"site-a", src, "cluster", "c1", `{}`},
		{"site-a", src, "host", "h1", `{"cluster_id":"c1"}`},
		{"site-a", src, "host", "h2", `{}`},
		{"site-a", src, "vm", "v1", `{"host_id":"h1","cluster_id":"c1","tags":["env/prod"]}`},
		{"site-a", src, "vm", "v2", `{"host_id":"h2","tags":["env/test"]}`},
		{"site-a", src, "datastore", "d1", `{}`},
		{"site-b", "vc-b", "vm", "v1", `{"host_id":"h9","tags":["env/prod"]}`},
	} {
		if _, err := f.pool.Exec(ctx, `INSERT INTO inventory_objects (site, source, kind, moref, name, props, first_seen, observed_at)
			VALUES ($1, $2, $3, $4, $4, $5, now(), now())`, o.site, o.source, o.kind, o.moref, o.props); err != nil {
			t.Fatal(err)
		}
	}
	var group string
	if err := f.pool.QueryRow(ctx, `INSERT INTO vm_groups (name) VALUES ('g') RETURNING id::text`).Scan(&group); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO vm_group_members (group_id, site, source, moref) VALUES ($1, 'site-a', $2, 'v2')`, group, src); err != nil {
		t.Fatal(err)
	}
	keys := []entityKey{
		{"site-a", src, KindCluster, "c1"}, {"site-a", src, KindHost, "h1"}, {"site-a", src, KindHost, "h2"},
		{"site-a", src, KindVM, "v1"}, {"site-a", src, KindVM, "v2"}, {"site-a", src, KindDatastore, "d1"},
		{"site-b", "vc-b", KindVM, "v1"}, {"site-a", "", KindSite, "site-a"}, {"site-a", src, KindVCenter, src},
		{"site-a", src, KindVM, "gone"},
	}
	scopes := []Scope{
		{},
		{Sites: []string{"site-a"}},
		{Hosts: []string{src + ":h1"}},
		{Clusters: []string{src + ":c1"}},
		{Tags: []string{"env/prod"}},
		{VMGroups: []string{group}},
		{Entities: []string{src + ":v1", "site-a", src}},
		{Sites: []string{"site-b"}, Tags: []string{"env/prod"}},
		{Hosts: []string{src + ":h2"}, Clusters: []string{src + ":c1"}},
		{Sites: []string{"site-a"}, VMGroups: []string{group}, Tags: []string{"env/test"}},
	}
	e := f.eng
	e.mu.Lock()
	err := e.reloadMeta(ctx)
	e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	agree, covered := 0, 0
	for _, s := range scopes {
		for _, k := range keys {
			e.mu.Lock()
			want := e.match(&compiled{rule: &Rule{Scope: s}}, k)
			e.mu.Unlock()
			a := args{k.site, k.source, k.kind, k.id}
			cond := ruleMatchSQL("x", s, &a)
			var got bool
			if err := f.pool.QueryRow(ctx, `SELECT `+cond+` FROM (SELECT $1::text AS site, $2::text AS source, $3::text AS entity_kind, $4::text AS entity_id) x`,
				a...).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("scope %+v, entity %s: SQL %v, engine %v", s, k, got, want)
			} else {
				agree++
			}
			if want {
				covered++
			}
		}
	}
	if covered == 0 || covered == len(scopes)*len(keys) {
		t.Fatalf("the cases cover %d of %d pairs: not a test of both answers", covered, len(scopes)*len(keys))
	}
	t.Logf("%d pairs agree, %d covered", agree, covered)
}
