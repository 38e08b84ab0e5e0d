package alert

import (
	"context"
	"fmt"

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
