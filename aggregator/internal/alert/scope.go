package alert

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Data scope. Alerts are site data: every read of alerts, their timelines,
// notifications and counts runs under the data scope of its context
// (package access), with the same rules as the store's (store/scope.go):
// a scope grants the listed sites whole and the VMs of the listed VM
// groups; a context with neither a scope nor the AllSites mark is refused
// (store.ErrNoScope); an alert outside the scope is exactly as absent as a
// missing one (ErrNotFound, never counted).
//
// The store keeps its filter builders to itself, so the VM-group condition
// is written here a second time; both read the same vm_groups,
// vm_group_members and vm_rule_matches.

// args collects positional query arguments.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return fmt.Sprintf("$%d", len(*a))
}

// scopeSQL is the condition that the alert on alias is in the scope of
// ctx.
func scopeSQL(ctx context.Context, alias string, a *args) (string, error) {
	sc, ok := access.From(ctx)
	if !ok {
		return "", store.ErrNoScope
	}
	if sc.Unrestricted() {
		return "true", nil
	}
	var conds []string
	if len(sc.Sites) > 0 {
		conds = append(conds, alias+".site = ANY("+a.add(sc.Sites)+"::text[])")
	}
	if len(sc.VMGroups) > 0 {
		g := a.add(sc.VMGroups)
		conds = append(conds, `(`+alias+`.entity_kind = 'vm' AND EXISTS (SELECT 1 FROM inventory_objects so WHERE so.site = `+alias+`.site
			AND so.source = `+alias+`.source AND so.kind = 'vm' AND so.moref = `+alias+`.entity_id AND so.deleted_at IS NULL
			AND EXISTS (SELECT 1 FROM vm_groups g WHERE g.id::text = ANY(`+g+`::text[]) AND (
				EXISTS (SELECT 1 FROM vm_group_members m WHERE m.group_id = g.id AND m.site = so.site AND m.source = so.source AND m.moref = so.moref)
				OR vm_rule_matches(g.rule, so.site, so.source, so.moref, so.name, so.path, so.props)))))`)
	}
	switch len(conds) {
	case 0:
		return "false", nil
	case 1:
		return conds[0], nil
	}
	return "(" + conds[0] + " OR " + conds[1] + ")", nil
}

// Unrestricted reports whether ctx sees every site (for the fleet-wide
// parts of the statistics, such as digests that name no single alert).
func Unrestricted(ctx context.Context) bool {
	sc, ok := access.From(ctx)
	return ok && sc.Unrestricted()
}

// Rules are configuration, but a rule's scope names sites, VM groups,
// hosts, clusters and entities, so rules are read under the data scope
// too: a rule is visible when everything its scope names lies within the
// caller's scope, and answers 404 otherwise (as a missing one).
//
//   - a rule that names nothing of any site (an empty scope: every entity
//     of its kind; or vSphere tags only, which are fleet-wide names) is
//     visible to every alert:read holder: it applies to the caller's
//     entities as well, its alerts in the caller's scope carry its name,
//     and it tells nothing of another site (writing it stays refused to a
//     limited caller, see httpapi's withinSites);
//   - scope.sites: each one of the caller's sites;
//   - scope.vm_groups: each one of the caller's VM groups, unless the rule
//     is confined to the caller's sites by scope.sites (every list must
//     match, so the group then reaches only those sites' VMs; group
//     definitions themselves are configuration every caller reads);
//   - scope.hosts, scope.clusters: each a live object of one of the
//     caller's sites;
//   - scope.entities: each a live object the caller sees (a VM of its
//     sites or of its VM groups; a host, cluster or datastore of its
//     sites; for site rules, one of its sites). An id the inventory does
//     not know is not provably the caller's, so it hides the rule too.
//
// Unlike a VM group, a host, cluster or entity outside the caller's scope
// hides the rule even when scope.sites confines it to the caller's sites:
// a group id names fleet-wide configuration, but those ids name another
// site's vCenter and objects (site data).
//
// The rule writes (rules_db.go) judge the same conditions in their own
// transaction: the stored rule on its locked row (hidden: ErrNotFound),
// and the written one before COMMIT (hidden: a ScopeError naming the
// lists at fault, and nothing is written).
//
// What this does not hide: rule names are fleet-wide (unique across every
// site, like VM groups'), so a taken name is refused whoever holds it;
// and an alert the caller sees names the rule that raised it (rule_id,
// rule_name, its alertname and rule_id labels, /alerts/stats by_rule),
// even when that rule itself is hidden.

// ruleScopeSQL is the condition that the rule on alias (an alert_rules
// row) is visible to ctx.
func ruleScopeSQL(ctx context.Context, alias string, a *args) (string, error) {
	parts, err := ruleScopeParts(ctx, alias, a)
	if err != nil {
		return "", err
	}
	if parts == nil {
		return "true", nil
	}
	conds := make([]string, len(parts))
	for i, p := range parts {
		conds[i] = p.cond
	}
	return "(" + strings.Join(conds, "\n\t\tAND ") + ")", nil
}

// scopePart is the visibility condition of one list of a rule's scope.
type scopePart struct {
	field string // the list, as a field of the rule's body: scope.hosts
	cond  string
}

// ruleScopeParts are the conditions, one per list of a rule's scope,
// that together make ruleScopeSQL; nil for an unrestricted ctx. A write
// the caller could not read back names the lists that failed.
func ruleScopeParts(ctx context.Context, alias string, a *args) ([]scopePart, error) {
	sc, ok := access.From(ctx)
	if !ok {
		return nil, store.ErrNoScope
	}
	if sc.Unrestricted() {
		return nil, nil
	}
	sites, groups := sc.Sites, sc.VMGroups
	if sites == nil {
		sites = []string{}
	}
	if groups == nil {
		groups = []string{}
	}
	s, g := a.add(sites)+"::text[]", a.add(groups)+"::text[]"
	list := func(k string) string {
		return `jsonb_array_elements_text(CASE WHEN jsonb_typeof(` + alias + `.spec->'scope'->'` + k + `') = 'array' THEN ` + alias + `.spec->'scope'->'` + k + `' ELSE '[]'::jsonb END)`
	}
	// obj is the condition that the live object x (source:moref) of kind
	// kinds is visible.
	obj := func(kinds string) string {
		return `EXISTS (SELECT 1 FROM inventory_objects o WHERE o.kind IN (` + kinds + `) AND o.deleted_at IS NULL
			AND o.source = substring(x from '^(.*):[^:]*$') AND o.moref = substring(x from ':([^:]*)$')
			AND (o.site = ANY(` + s + `) OR (o.kind = 'vm' AND EXISTS (SELECT 1 FROM vm_groups vg WHERE vg.id::text = ANY(` + g + `) AND (
				EXISTS (SELECT 1 FROM vm_group_members m WHERE m.group_id = vg.id AND m.site = o.site AND m.source = o.source AND m.moref = o.moref)
				OR vm_rule_matches(vg.rule, o.site, o.source, o.moref, o.name, o.path, o.props))))))`
	}
	confined := `(EXISTS (SELECT 1 FROM ` + list("sites") + ` x) AND NOT EXISTS (SELECT 1 FROM ` + list("sites") + ` x WHERE x <> ALL(` + s + `)))`
	return []scopePart{
		{"scope.sites", `NOT EXISTS (SELECT 1 FROM ` + list("sites") + ` x WHERE x <> ALL(` + s + `))`},
		{"scope.vm_groups", `(` + confined + ` OR NOT EXISTS (SELECT 1 FROM ` + list("vm_groups") + ` x WHERE x <> ALL(` + g + `)))`},
		{"scope.hosts", `NOT EXISTS (SELECT 1 FROM ` + list("hosts") + ` x WHERE NOT ` + obj(`'host'`) + `)`},
		{"scope.clusters", `NOT EXISTS (SELECT 1 FROM ` + list("clusters") + ` x WHERE NOT ` + obj(`'cluster'`) + `)`},
		{"scope.entities", `NOT EXISTS (SELECT 1 FROM ` + list("entities") + ` x WHERE NOT CASE WHEN ` + alias + `.entity_kind IN ('site', 'vcenter')
			THEN (` + alias + `.entity_kind = 'site' AND x = ANY(` + s + `)) OR (` + alias + `.entity_kind = 'vcenter' AND ` + vcenterSQL("x", s) + `)
			ELSE ` + obj(alias+`.entity_kind`) + ` END)`},
	}, nil
}

// vcenterSQL is the condition that the vCenter (source) x belongs to one
// of the sites in the text[] expression s: an agent of those sites
// reports it, or the inventory holds objects of it there.
func vcenterSQL(x, s string) string {
	return `(EXISTS (SELECT 1 FROM agents ag, jsonb_array_elements(ag.vcenters) v WHERE ag.site = ANY(` + s + `) AND v->>'source' = ` + x + `)
		OR EXISTS (SELECT 1 FROM inventory_objects vo WHERE vo.site = ANY(` + s + `) AND vo.source = ` + x + `))`
}

// seesSite reports whether ctx sees the whole of site (an unrestricted
// caller, or one whose scope lists the site).
func seesSite(ctx context.Context, site string) bool {
	sc, ok := access.From(ctx)
	return ok && (sc.Unrestricted() || slices.Contains(sc.Sites, site))
}

// A suppressed alert names its cause: the parent's alert (suppressed_by)
// and, in its reason, the parent (a host, a datastore, a vCenter) or the
// maintenance window. A caller who sees the alert only through a VM group
// sees neither that parent nor its alerts nor the site's windows, so for
// it the reference is dropped and the reason says what kind of cause it
// was without naming it.
var suppressionReasons = []struct {
	re  *regexp.Regexp
	out string
}{
	{regexp.MustCompile(`^host .+ is (in maintenance mode)$`), "its host is $1"},
	{regexp.MustCompile(`^host .+ is ([^ ]+)$`), "its host is $1"},
	{regexp.MustCompile(`^datastore .+ is inaccessible$`), "a datastore it uses is inaccessible"},
	{regexp.MustCompile(`^vCenter .+ is unreachable$`), "its vCenter is unreachable"},
	{regexp.MustCompile(`^maintenance window `), "a maintenance window"},
}

// redactedReason is reason without the names a VM-group-scoped caller
// may not see.
func redactedReason(reason string) string {
	if reason == "" {
		return ""
	}
	for _, r := range suppressionReasons {
		if m := r.re.FindStringSubmatchIndex(reason); m != nil {
			return string(r.re.ExpandString(nil, r.out, reason, m))
		}
	}
	return "a parent's state"
}

// redactSuppression drops from al what its caller may not see of its
// suppression's cause.
func redactSuppression(ctx context.Context, al *Alert) {
	if al.SuppressedBy == nil && al.SuppressedReason == "" || seesSite(ctx, al.Site) {
		return
	}
	al.SuppressedBy = nil
	al.SuppressedReason = redactedReason(al.SuppressedReason)
}

// redactEvent does the same for a timeline entry of the alert of site.
func redactEvent(ctx context.Context, site string, ev *Event) {
	if ev.Detail == nil || seesSite(ctx, site) {
		return
	}
	reason, _ := ev.Detail["reason"].(string)
	delete(ev.Detail, "suppressed_by")
	delete(ev.Detail, "maintenance_window")
	if _, ok := ev.Detail["reason"]; ok && ev.Kind == "suppressed" {
		ev.Detail["reason"] = redactedReason(reason)
	}
}
