package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
)

// Data scope. Every read or command of site-owned data (inventory objects,
// sites, agents, samples) runs under the data scope of its context, and the
// store builds the filter itself, in the same statement as the read: a
// handler cannot forget it, and an object outside the scope is exactly as
// absent as a missing one (ErrNotFound, not counted, not listed).
//
// The scope comes from the context (package access): the principal's, put
// there by auth.WithPrincipal — a user's scope, or for an API token its
// owner's. A context without one is refused with ErrNoScope, unless the
// aggregator's own work (ingest, jobs, the metrics exposition, the command
// line) marked it with AllSites. A scope always wins over AllSites, so a
// request's context cannot be widened by marking it.
//
// A scope lists sites and VM groups; empty lists on both mean everything.
// What it grants is the union: the listed sites whole (their VMs, hosts,
// clusters, datastores, agents, samples and the site itself), and the VMs of
// the listed groups (by id; see vmgroups.go), whose membership is evaluated
// at read time, so a scope follows group changes at once.

// ErrNoScope is returned by a read of site data whose context carries
// neither a data scope nor the AllSites mark: a programming error, refused
// rather than answered unfiltered.
var ErrNoScope = errors.New("store: no data scope in the context (no principal and not marked AllSites)")

// AllSites returns ctx marked to read every site's data when it carries no
// data scope (see access.AllSites).
func AllSites(ctx context.Context) context.Context { return access.AllSites(ctx) }

// dataScope is the resolved scope of one call.
type dataScope struct {
	all    bool
	sites  []string
	groups []string
}

// scopeOf resolves the data scope of ctx.
func scopeOf(ctx context.Context) (dataScope, error) {
	sc, ok := access.From(ctx)
	switch {
	case !ok:
		return dataScope{}, ErrNoScope
	case sc.Unrestricted():
		return dataScope{all: true}, nil
	}
	return dataScope{sites: nonNilStrings(sc.Sites), groups: nonNilStrings(sc.VMGroups)}, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// siteSQL is the condition that the site in column col is in the scope.
func (d dataScope) siteSQL(col string, a *args) string {
	switch {
	case d.all:
		return "true"
	case len(d.sites) == 0:
		return "false"
	}
	return col + " = ANY(" + a.add(d.sites) + "::text[])"
}

// vmSQL is the condition that the VM on alias (an inventory_objects row)
// is in the scope: in one of its sites or one of its groups.
func (d dataScope) vmSQL(alias string, a *args) string {
	if d.all || len(d.groups) == 0 {
		return d.siteSQL(alias+".site", a)
	}
	in := groupMemberSQL(alias, a.add(d.groups))
	if len(d.sites) == 0 {
		return in
	}
	return "(" + d.siteSQL(alias+".site", a) + " OR " + in + ")"
}

// seriesSQL is the condition that the series on alias se is in the scope:
// of one of its sites, or of a VM in one of its groups.
func (d dataScope) seriesSQL(se string, a *args) string {
	if d.all || len(d.groups) == 0 {
		return d.siteSQL(se+".site", a)
	}
	vm := `(` + se + `.entity_kind = 'vm' AND EXISTS (SELECT 1 FROM inventory_objects so WHERE so.site = ` + se + `.site
		AND so.source = ` + se + `.source AND so.kind = 'vm' AND so.moref = ` + se + `.entity_id AND ` + groupMemberSQL("so", a.add(d.groups)) + `))`
	if len(d.sites) == 0 {
		return vm
	}
	return "(" + d.siteSQL(se+".site", a) + " OR " + vm + ")"
}

// entityVisible reports whether an entity of site is in the scope: its
// whole site is, or it is a live VM in one of the scope's groups.
func (s *Store) entityVisible(ctx context.Context, d dataScope, site, source, kind, entity string) (bool, error) {
	if d.allowsSite(site) {
		return true, nil
	}
	if kind != KindVM || len(d.groups) == 0 {
		return false, nil
	}
	a := args{site, source, entity}
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inventory_objects o WHERE o.site = $1 AND o.source = $2 AND o.kind = 'vm'
		AND o.moref = $3 AND o.deleted_at IS NULL AND `+d.vmSQL("o", &a)+`)`, a...).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: scope of vm %s/%s: %w", source, entity, err)
	}
	return ok, nil
}

// allowsSite reports whether the whole of site is in the scope.
func (d dataScope) allowsSite(site string) bool {
	return d.all || slices.Contains(d.sites, site)
}

// siteCommand checks a command that creates data of site (a site, an
// enrollment token): refused as ErrNotFound when ctx carries a data scope
// without the site. Unlike reads, a context without any scope may act: the
// aggregator's own setup and the command line create sites that way.
func siteCommand(ctx context.Context, site string) error {
	sc, ok := access.From(ctx)
	if !ok || sc.Unrestricted() || slices.Contains(sc.Sites, site) {
		return nil
	}
	return ErrNotFound
}

// argList is args under a name that functions with an args variable can
// still use.
type argList = args
