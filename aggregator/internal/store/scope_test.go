package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// TestDataScope: every read of site data applies the scope in its context;
// out-of-scope objects are ErrNotFound; a context without a scope is
// refused, and a scope wins over AllSites.
func TestDataScope(t *testing.T) {
	f := inventoryFixture(t)
	dc1 := access.WithScope(context.Background(), access.Scope{Sites: []string{"dc1"}})
	// Marking a scoped context AllSites does not widen it.
	dc2 := store.AllSites(access.WithScope(context.Background(), access.Scope{Sites: []string{"dc2"}}))
	nowhere := access.WithScope(context.Background(), access.Scope{Sites: []string{"no-such-site"}})
	groupsOnly := access.WithScope(context.Background(), access.Scope{VMGroups: []string{"g1"}})

	for _, c := range []struct {
		name string
		ctx  context.Context
		vms  []string
	}{
		{"dc1", dc1, []string{"db_01", "lonely", "web-01", "web-02"}},
		{"dc2 marked AllSites", dc2, []string{"edge-01"}},
		{"unknown site", nowhere, nil},
		{"groups only (no groups exist yet)", groupsOnly, nil},
		{"unrestricted", f.ctx, []string{"db_01", "edge-01", "lonely", "web-01", "web-02"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A filter naming another site, or a search matching its VM,
			// still yields only the scope's VMs.
			for _, q := range []store.VMQuery{{}, {VMFilter: store.VMFilter{Site: "dc2"}}, {VMFilter: store.VMFilter{Q: "edge"}}} {
				got, total, err := f.st.VMs(c.ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				want := slices.DeleteFunc(slices.Clone(c.vms), func(n string) bool {
					return (q.Site == "dc2" && n != "edge-01") || (q.Q == "edge" && n != "edge-01")
				})
				if names := vmNames(got); !slices.Equal(names, want) || total != len(want) {
					t.Errorf("VMs(%+v) = %v (total %d), want %v", q.VMFilter, names, total, want)
				}
			}
			st, err := f.st.VMStats(c.ctx, store.VMFilter{})
			if err != nil || st.Total != int64(len(c.vms)) {
				t.Errorf("VMStats total = %d, %v; want %d", st.Total, err, len(c.vms))
			}
		})
	}

	// Lookups and lists of every kind.
	if _, err := f.st.VM(dc1, vcB, "vm-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VM of dc2 in scope dc1: %v", err)
	}
	if _, err := f.st.VM(dc1, vcA, "vm-1"); err != nil {
		t.Errorf("VM of dc1 in scope dc1: %v", err)
	}
	if _, err := f.st.Object(dc1, store.KindHost, vcB, "host-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("host of dc2 in scope dc1: %v", err)
	}
	if hosts, total, err := f.st.Objects(dc2, store.ObjectQuery{Kind: store.KindHost}); err != nil || total != 1 || hosts[0].Name != "esx9" {
		t.Errorf("hosts in scope dc2 = %v (%d), %v", hosts, total, err)
	}
	if ds, total, err := f.st.Objects(dc2, store.ObjectQuery{Kind: store.KindDatastore, Site: "dc1"}); err != nil || total != 0 || len(ds) != 0 {
		t.Errorf("datastores of dc1 in scope dc2 = %v (%d), %v", ds, total, err)
	}
	if sites, total, err := f.st.Sites(dc1, store.SiteQuery{}); err != nil || total != 1 || sites[0].Name != "dc1" {
		t.Errorf("sites in scope dc1 = %v (%d), %v", sites, total, err)
	}
	if _, err := f.st.Site(dc1, "dc2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("site dc2 in scope dc1: %v", err)
	}
	if agents, err := f.st.Agents(dc2); err != nil || len(agents) != 1 || agents[0].Site != "dc2" {
		t.Errorf("agents in scope dc2 = %+v, %v", agents, err)
	}
	if _, err := f.st.AgentByID(dc2, f.agent); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("agent of dc1 in scope dc2: %v", err)
	}
	if err := f.st.RevokeAgent(dc2, f.agent); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke an agent of dc1 in scope dc2: %v", err)
	}
	if a, err := f.st.AgentByID(f.ctx, f.agent); err != nil || a.RevokedAt != nil {
		t.Errorf("agent after the refused revocation: %+v, %v", a, err)
	}
	if err := f.st.EnsureSite(dc1, "new-site", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("create a site outside scope dc1: %v", err)
	}
	if _, _, err := f.st.CreateEnrollmentToken(dc1, "dc2", time.Hour, "t"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("enrollment token for dc2 in scope dc1: %v", err)
	}
	if lv, err := f.st.LatestValues(dc1, "dc2", vcB, store.KindVM, "vm-1", time.Hour); err != nil || len(lv) != 0 {
		t.Errorf("latest values of dc2 in scope dc1 = %v, %v", lv, err)
	}
	if res, err := f.st.QueryRange(dc2, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: time.Now().Add(-time.Hour), To: time.Now()}); err != nil || len(res.Series) != 0 {
		t.Errorf("range query in scope dc2 (no dc2 samples) = %d series, %v", len(res.Series), err)
	}

	// Fail closed: no scope and no AllSites mark.
	bare := context.Background()
	for name, call := range map[string]func() error{
		"VMs":         func() error { _, _, err := f.st.VMs(bare, store.VMQuery{}); return err },
		"VMStats":     func() error { _, err := f.st.VMStats(bare, store.VMFilter{}); return err },
		"VM":          func() error { _, err := f.st.VM(bare, vcA, "vm-1"); return err },
		"Objects":     func() error { _, _, err := f.st.Objects(bare, store.ObjectQuery{Kind: store.KindHost}); return err },
		"Sites":       func() error { _, _, err := f.st.Sites(bare, store.SiteQuery{}); return err },
		"Site":        func() error { _, err := f.st.Site(bare, "dc1"); return err },
		"Agents":      func() error { _, err := f.st.Agents(bare); return err },
		"AgentByID":   func() error { _, err := f.st.AgentByID(bare, f.agent); return err },
		"RevokeAgent": func() error { return f.st.RevokeAgent(bare, f.agent) },
		"LatestValues": func() error {
			_, err := f.st.LatestValues(bare, "dc1", vcA, store.KindVM, "vm-1", time.Hour)
			return err
		},
		"QueryRange": func() error {
			_, err := f.st.QueryRange(bare, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: time.Now().Add(-time.Hour), To: time.Now()})
			return err
		},
	} {
		if err := call(); !errors.Is(err, store.ErrNoScope) {
			t.Errorf("%s without a scope: %v, want ErrNoScope", name, err)
		}
	}
}
