// Package access carries the data scope of a call in its context: which
// sites and VM groups the caller may see. The authentication layer puts the
// principal's scope there (auth.WithPrincipal); the store reads it and
// builds its filter from it in every read of site data, so no handler can
// forget it. It imports nothing of vmpulse, so both sides can use it.
package access

import (
	"context"
	"slices"
)

// Scope is a user's optional data scope. Empty lists mean no restriction;
// otherwise it grants the union of the listed sites and VM groups.
type Scope struct {
	Sites    []string `json:"sites"`
	VMGroups []string `json:"vm_groups"`
}

// Unrestricted reports whether the scope allows all data.
func (s Scope) Unrestricted() bool { return len(s.Sites) == 0 && len(s.VMGroups) == 0 }

type scopeKey struct{}

type allSitesKey struct{}

// WithScope returns ctx limited to s. It wins over AllSites.
func WithScope(ctx context.Context, s Scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// AllSites returns ctx marked to read every site's data when it carries no
// scope of its own. It is for the aggregator's own work (ingest, jobs, the
// metrics exposition, the command line), never for a request made on a
// user's behalf: a scope set with WithScope still limits ctx.
func AllSites(ctx context.Context) context.Context {
	return context.WithValue(ctx, allSitesKey{}, true)
}

// From returns the scope of ctx: the one set with WithScope, else an
// unrestricted scope when ctx is marked AllSites. ok is false when ctx has
// neither: the caller must refuse rather than read unfiltered.
func From(ctx context.Context) (s Scope, ok bool) {
	if s, ok := ctx.Value(scopeKey{}).(Scope); ok {
		return s, true
	}
	if all, _ := ctx.Value(allSitesKey{}).(bool); all {
		return Scope{}, true
	}
	return Scope{}, false
}

// Within reports whether scope s grants nothing beyond scope c. A scope
// grants the union of its sites and VM groups, and an unrestricted scope
// (both lists empty) grants everything; so s is within c when c is
// unrestricted, or when s is restricted and each of its sites is one of c's
// sites and each of its groups one of c's groups.
func (s Scope) Within(c Scope) bool {
	if c.Unrestricted() {
		return true
	}
	if s.Unrestricted() {
		return false
	}
	return subset(s.Sites, c.Sites) && subset(s.VMGroups, c.VMGroups)
}

func subset(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
