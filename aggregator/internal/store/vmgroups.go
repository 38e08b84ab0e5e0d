package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// VM groups and the user fields of VMs (migration 008). A group's members
// are its static members plus every live VM its rule matches, evaluated at
// read time by the SQL function vm_rule_matches, so membership follows the
// inventory (a tag change, a vMotion to another cluster) with no refresh.

// GroupRule selects VMs by their inventory and user fields; every condition
// given must hold, and an empty rule selects nothing (static members only).
type GroupRule struct {
	Site string `json:"site,omitempty"`
	// NameGlob matches the VM's name, any case: * any run, ? one character.
	NameGlob string `json:"name_glob,omitempty"`
	// Folder is a prefix of the VM's inventory path
	// ("/Datacenters/DC1/vm/web").
	Folder string `json:"folder,omitempty"`
	// Tags: the VM carries at least one of them ("category/name").
	Tags []string `json:"tags,omitempty"`
	// Cluster and Host are names.
	Cluster string `json:"cluster,omitempty"`
	Host    string `json:"host,omitempty"`
	// Labels: the VM's user labels include all of these.
	Labels map[string]string `json:"labels,omitempty"`
}

// Empty reports whether the rule has no condition.
func (r GroupRule) Empty() bool {
	return r.Site == "" && r.NameGlob == "" && r.Folder == "" && len(r.Tags) == 0 && r.Cluster == "" && r.Host == "" && len(r.Labels) == 0
}

// sqlJSON is the rule as vm_rule_matches reads it: the glob becomes a LIKE
// pattern (name_like).
func (r GroupRule) sqlJSON() map[string]any {
	m := map[string]any{}
	if r.Empty() {
		return m
	}
	b, _ := json.Marshal(r)
	_ = json.Unmarshal(b, &m)
	if r.NameGlob != "" {
		m["name_like"] = globToLike(r.NameGlob)
	}
	return m
}

// globToLike turns a name glob into a LIKE pattern, escaping LIKE's own
// wildcards.
func globToLike(g string) string {
	var b strings.Builder
	for _, c := range g {
		switch c {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// VMGroup is a group with its member counts.
type VMGroup struct {
	ID          uuid.UUID
	Name        string
	Description string
	Rule        GroupRule
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CreatedBy   string
	// StaticMembers counts the static members in the caller's data scope;
	// Members counts every member (static or by rule) in it.
	StaticMembers, Members int64
}

// GroupInput is what a caller sets on a group.
type GroupInput struct {
	Name, Description string
	Rule              GroupRule
}

// ErrGroupNameTaken is returned when another group has the name.
var ErrGroupNameTaken = errors.New("store: a VM group with this name exists")

// groupMemberSQL is the condition that the VM on alias o is a member of one
// of the groups whose ids (as text) are in the parameter param.
func groupMemberSQL(alias, param string) string {
	return `EXISTS (SELECT 1 FROM vm_groups g WHERE g.id::text = ANY(` + param + `::text[]) AND (
		EXISTS (SELECT 1 FROM vm_group_members m WHERE m.group_id = g.id AND m.site = ` + alias + `.site
		    AND m.source = ` + alias + `.source AND m.moref = ` + alias + `.moref)
		OR vm_rule_matches(g.rule, ` + alias + `.site, ` + alias + `.source, ` + alias + `.moref, ` + alias + `.name, ` + alias + `.path, ` + alias + `.props)))`
}

const groupCols = `g.id, g.name, g.description, g.rule, g.created_at, g.updated_at, g.created_by`

// groupCounts are the member counts of group g within the scope's VM
// condition (on alias v).
func groupCounts(vmScope string) string {
	return `,
	(SELECT count(*) FROM vm_group_members m JOIN inventory_objects v ON v.site = m.site AND v.source = m.source
	    AND v.kind = 'vm' AND v.moref = m.moref AND v.deleted_at IS NULL WHERE m.group_id = g.id AND ` + vmScope + `),
	(SELECT count(*) FROM inventory_objects v WHERE v.kind = 'vm' AND v.deleted_at IS NULL AND ` + vmScope + ` AND (
	    EXISTS (SELECT 1 FROM vm_group_members m WHERE m.group_id = g.id AND m.site = v.site AND m.source = v.source AND m.moref = v.moref)
	    OR vm_rule_matches(g.rule, v.site, v.source, v.moref, v.name, v.path, v.props)))`
}

func scanGroup(row pgx.Row) (VMGroup, error) {
	var g VMGroup
	var rule map[string]any
	if err := row.Scan(&g.ID, &g.Name, &g.Description, &rule, &g.CreatedAt, &g.UpdatedAt, &g.CreatedBy, &g.StaticMembers, &g.Members); err != nil {
		return g, err
	}
	delete(rule, "name_like")
	b, _ := json.Marshal(rule)
	_ = json.Unmarshal(b, &g.Rule)
	return g, nil
}

// groupVisibleSQL is the condition that the group on alias g is visible
// in the scope: every group to an unrestricted caller; to a restricted one,
// the groups of its scope, and the groups wholly within its sites (a rule
// naming one of them, or no rule, and static members only of them). Any
// other group is as absent as a missing one.
func (d dataScope) groupVisibleSQL(g string, a *args) string {
	if d.all {
		return "true"
	}
	sites := a.add(d.sites)
	return `(` + g + `.id::text = ANY(` + a.add(d.groups) + `::text[]) OR (
		(` + g + `.rule = '{}'::jsonb OR ` + g + `.rule->>'site' = ANY(` + sites + `::text[]))
		AND NOT EXISTS (SELECT 1 FROM vm_group_members vm WHERE vm.group_id = ` + g + `.id AND NOT vm.site = ANY(` + sites + `::text[]))))`
}

// VMGroups lists the groups visible in the caller's data scope by name, with
// their members in that scope counted.
func (s *Store) VMGroups(ctx context.Context) ([]VMGroup, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	var a args
	counts := groupCounts(sc.vmSQL("v", &a))
	rows, err := s.pool.Query(ctx, `SELECT `+groupCols+counts+` FROM vm_groups g WHERE `+sc.groupVisibleSQL("g", &a)+` ORDER BY g.name`, a...)
	if err != nil {
		return nil, fmt.Errorf("store: vm groups: %w", err)
	}
	defer rows.Close()
	out := []VMGroup{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, fmt.Errorf("store: vm groups: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: vm groups: %w", err)
	}
	return out, nil
}

// VMGroupByID returns one group visible in the caller's data scope, or
// ErrNotFound.
func (s *Store) VMGroupByID(ctx context.Context, id uuid.UUID) (VMGroup, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return VMGroup{}, err
	}
	a := args{id}
	counts := groupCounts(sc.vmSQL("v", &a))
	g, err := scanGroup(s.pool.QueryRow(ctx, `SELECT `+groupCols+counts+` FROM vm_groups g WHERE g.id = $1 AND `+sc.groupVisibleSQL("g", &a), a...))
	if errors.Is(err, pgx.ErrNoRows) {
		return VMGroup{}, ErrNotFound
	}
	if err != nil {
		return VMGroup{}, fmt.Errorf("store: vm group %s: %w", id, err)
	}
	return g, nil
}

func groupConflict(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return ErrGroupNameTaken
	}
	return err
}

// CreateVMGroup creates a group and returns its id.
func (s *Store) CreateVMGroup(ctx context.Context, in GroupInput, by string) (uuid.UUID, error) {
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, `INSERT INTO vm_groups (name, description, rule, created_by) VALUES ($1, $2, $3, $4) RETURNING id`,
		in.Name, in.Description, in.Rule.sqlJSON(), by).Scan(&id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("store: create vm group: %w", groupConflict(err))
	}
	return id, nil
}

// Groups can be data scopes, so changing a group that some user's scope
// names changes what that user sees: such a change needs the caller's
// right to set scopes (GroupChange.MayChangeScopes), and is checked in the
// same transaction as the change, with the group's row locked.
var (
	// ErrGroupInScope refuses a change to a group that some user's data
	// scope names, by a caller who may not change scopes (or, for a
	// delete, by anyone: remove it from the scopes first).
	ErrGroupInScope = errors.New("store: the VM group is some user's data scope")
	// ErrLabelRuleInScope refuses a label condition on a group that is a
	// data scope: labels are edited with vm:write, which must not widen a
	// scope.
	ErrLabelRuleInScope = errors.New("store: a VM group that is a data scope cannot select by labels")
)

// GroupChange says who changes a group.
type GroupChange struct {
	// MayChangeScopes is true for a caller who may set users' data scopes
	// (user:write and an unrestricted scope of their own).
	MayChangeScopes bool
}

// lockGroup locks a group visible in the caller's scope for the rest of tx
// and reports whether some user's scope names it.
func (s *Store) lockGroup(ctx context.Context, tx pgx.Tx, id uuid.UUID) (inScope bool, err error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return false, err
	}
	a := args{id}
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE g.id::text = ANY(scope_vm_groups))
		FROM vm_groups g WHERE g.id = $1 AND `+sc.groupVisibleSQL("g", &a)+` FOR UPDATE OF g`, a...).Scan(&inScope)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, ErrNotFound
	}
	if err != nil {
		return false, fmt.Errorf("store: lock vm group %s: %w", id, err)
	}
	return inScope, nil
}

// inTx runs fn in a transaction.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}

// UpdateVMGroup replaces a group's name, description and rule.
func (s *Store) UpdateVMGroup(ctx context.Context, id uuid.UUID, in GroupInput, c GroupChange) error {
	return s.inTx(ctx, "update vm group", func(tx pgx.Tx) error {
		inScope, err := s.lockGroup(ctx, tx, id)
		switch {
		case err != nil:
			return err
		case inScope && !c.MayChangeScopes:
			return ErrGroupInScope
		case inScope && len(in.Rule.Labels) > 0:
			return ErrLabelRuleInScope
		}
		if _, err := tx.Exec(ctx, `UPDATE vm_groups SET name = $2, description = $3, rule = $4, updated_at = now() WHERE id = $1`,
			id, in.Name, in.Description, in.Rule.sqlJSON()); err != nil {
			return fmt.Errorf("store: update vm group %s: %w", id, groupConflict(err))
		}
		return nil
	})
}

// DeleteVMGroup deletes a group and its static memberships. A group some
// user's scope names is ErrGroupInScope, whoever asks: removing it from a
// scope would leave that scope empty, which means everything.
func (s *Store) DeleteVMGroup(ctx context.Context, id uuid.UUID) error {
	return s.inTx(ctx, "delete vm group", func(tx pgx.Tx) error {
		inScope, err := s.lockGroup(ctx, tx, id)
		switch {
		case err != nil:
			return err
		case inScope:
			return ErrGroupInScope
		}
		if _, err := tx.Exec(ctx, `DELETE FROM vm_groups WHERE id = $1`, id); err != nil {
			return fmt.Errorf("store: delete vm group %s: %w", id, err)
		}
		return nil
	})
}

// ScopeGroups checks ids for use in a data scope: missing lists those that
// are not groups, labelRuled those whose rule selects by labels (see
// ErrLabelRuleInScope).
func (s *Store) ScopeGroups(ctx context.Context, ids []string) (missing, labelRuled []string, err error) {
	rows, err := s.pool.Query(ctx, `SELECT x, g.id IS NULL, coalesce(g.rule ? 'labels', false)
		FROM unnest($1::text[]) x LEFT JOIN vm_groups g ON g.id::text = x`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("store: scope groups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var gone, labels bool
		if err := rows.Scan(&id, &gone, &labels); err != nil {
			return nil, nil, fmt.Errorf("store: scope groups: %w", err)
		}
		if gone {
			missing = append(missing, id)
		} else if labels {
			labelRuled = append(labelRuled, id)
		}
	}
	return missing, labelRuled, rows.Err()
}

// VMRef names a VM by source and moref.
type VMRef struct{ Source, Moref string }

// SetGroupMembers adds (add true) or removes static members of a group
// visible in the caller's scope. Each VM must be a live VM in the caller's
// data scope (for a removal, a member that is gone may be removed too, if
// its site is in the scope); the result says per VM whether it was applied
// (nil) or why not (ErrNotFound). A group some user's scope names needs
// c.MayChangeScopes (ErrGroupInScope).
func (s *Store) SetGroupMembers(ctx context.Context, id uuid.UUID, vms []VMRef, add bool, c GroupChange) ([]error, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]error, len(vms))
	err = s.inTx(ctx, "vm group members", func(tx pgx.Tx) error {
		inScope, err := s.lockGroup(ctx, tx, id)
		switch {
		case err != nil:
			return err
		case inScope && !c.MayChangeScopes:
			return ErrGroupInScope
		}
		for i, v := range vms {
			a := args{v.Source, v.Moref}
			var site string
			err := tx.QueryRow(ctx, `SELECT o.site FROM inventory_objects o WHERE o.site = (SELECT site FROM sources WHERE source = $1)
				AND o.source = $1 AND o.kind = 'vm' AND o.moref = $2 AND o.deleted_at IS NULL AND `+sc.vmSQL("o", &a), a...).Scan(&site)
			switch {
			case errors.Is(err, pgx.ErrNoRows) && !add:
				// A forgotten or vanished VM can still leave the group, if
				// its site is the caller's.
				a := args{id, v.Source, v.Moref}
				tag, err := tx.Exec(ctx, `DELETE FROM vm_group_members m WHERE m.group_id = $1 AND m.source = $2 AND m.moref = $3
					AND m.site = (SELECT site FROM sources WHERE source = $2) AND `+sc.siteSQL("m.site", &a), a...)
				if err != nil {
					return fmt.Errorf("store: vm group %s members: %w", id, err)
				}
				if tag.RowsAffected() == 0 {
					out[i] = ErrNotFound
				}
				continue
			case errors.Is(err, pgx.ErrNoRows):
				out[i] = ErrNotFound
				continue
			case err != nil:
				return fmt.Errorf("store: vm group %s members: %w", id, err)
			}
			if add {
				_, err = tx.Exec(ctx, `INSERT INTO vm_group_members (group_id, site, source, moref) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
					id, site, v.Source, v.Moref)
			} else {
				_, err = tx.Exec(ctx, `DELETE FROM vm_group_members WHERE group_id = $1 AND site = $2 AND source = $3 AND moref = $4`,
					id, site, v.Source, v.Moref)
			}
			if err != nil {
				return fmt.Errorf("store: vm group %s members: %w", id, err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE vm_groups SET updated_at = now() WHERE id = $1`, id); err != nil {
			return fmt.Errorf("store: vm group %s members: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// VMUserFields are the fields an operator keeps on a VM.
type VMUserFields struct {
	Description, Owner string
	Labels             map[string]string
	UpdatedAt          *time.Time
	UpdatedBy          string
}

// VMFieldsPatch changes some user fields: nil leaves a field as it is;
// Labels replaces the whole label set.
type VMFieldsPatch struct {
	Description, Owner *string
	Labels             *map[string]string
}

// PatchVM applies p to a live VM in the caller's data scope, or ErrNotFound.
func (s *Store) PatchVM(ctx context.Context, source, moref string, p VMFieldsPatch, by string) error {
	o, err := s.Object(ctx, KindVM, source, moref)
	if err != nil {
		return err
	}
	var labels any
	if p.Labels != nil {
		labels = *p.Labels
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO vm_user_fields (site, source, moref, description, owner, labels, updated_by)
		VALUES ($1, $2, $3, coalesce($4, ''), coalesce($5, ''), coalesce($6::jsonb, '{}'), $7)
		ON CONFLICT (site, source, moref) DO UPDATE SET
		    description = coalesce($4, vm_user_fields.description), owner = coalesce($5, vm_user_fields.owner),
		    labels = coalesce($6::jsonb, vm_user_fields.labels), updated_at = now(), updated_by = $7`,
		o.Site, o.Source, o.Moref, p.Description, p.Owner, labels, by)
	if err != nil {
		return fmt.Errorf("store: patch vm %s/%s: %w", source, moref, err)
	}
	return nil
}

// ErrVMLive refuses to forget a VM that vCenter still has.
var ErrVMLive = errors.New("store: the VM is still in vCenter's inventory")

// ForgetVM removes a VM that vCenter no longer has (deleted from the
// inventory), with its user fields and static group memberships; its
// samples stay until retention. A live VM is ErrVMLive; an unknown one, or
// one of a site outside the caller's data scope, ErrNotFound.
func (s *Store) ForgetVM(ctx context.Context, source, moref string) error {
	sc, err := scopeOf(ctx)
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: forget vm %s/%s: %w", source, moref, err)
	}
	defer tx.Rollback(ctx)
	var site string
	var deleted bool
	a := args{source, moref}
	err = tx.QueryRow(ctx, `SELECT o.site, o.deleted_at IS NOT NULL FROM inventory_objects o
		WHERE o.site = (SELECT site FROM sources WHERE source = $1) AND o.source = $1 AND o.kind = 'vm' AND o.moref = $2
		AND `+sc.siteSQL("o.site", &a)+` FOR UPDATE`, a...).Scan(&site, &deleted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("store: forget vm %s/%s: %w", source, moref, err)
	case !deleted:
		return ErrVMLive
	}
	for _, q := range []string{
		`DELETE FROM inventory_objects WHERE site = $1 AND source = $2 AND kind = 'vm' AND moref = $3`,
		`DELETE FROM vm_user_fields WHERE site = $1 AND source = $2 AND moref = $3`,
		`DELETE FROM vm_group_members WHERE site = $1 AND source = $2 AND moref = $3`,
	} {
		if _, err := tx.Exec(ctx, q, site, source, moref); err != nil {
			return fmt.Errorf("store: forget vm %s/%s: %w", source, moref, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: forget vm %s/%s: %w", source, moref, err)
	}
	return nil
}

// GroupRef is a group a VM belongs to.
type GroupRef struct {
	ID   uuid.UUID
	Name string
	// Static: the VM is a member by hand (POST /vm-groups/{id}/members or
	// the batch); ByRule: the group's rule selects it. Both may hold.
	Static, ByRule bool
}

// vmExtras reads a VM's user fields and groups.
func (s *Store) vmExtras(ctx context.Context, o *Object) (VMUserFields, []GroupRef, error) {
	f := VMUserFields{Labels: map[string]string{}}
	var at time.Time
	err := s.pool.QueryRow(ctx, `SELECT description, owner, labels, updated_at, updated_by FROM vm_user_fields
		WHERE site = $1 AND source = $2 AND moref = $3`, o.Site, o.Source, o.Moref).Scan(&f.Description, &f.Owner, &f.Labels, &at, &f.UpdatedBy)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return f, nil, fmt.Errorf("store: vm %s/%s user fields: %w", o.Source, o.Moref, err)
	default:
		f.UpdatedAt = &at
	}
	rows, err := s.pool.Query(ctx, `SELECT id, name, static, by_rule FROM (
		  SELECT g.id, g.name,
		    EXISTS (SELECT 1 FROM vm_group_members m WHERE m.group_id = g.id AND m.site = o.site AND m.source = o.source AND m.moref = o.moref) AS static,
		    coalesce(vm_rule_matches(g.rule, o.site, o.source, o.moref, o.name, o.path, o.props), false) AS by_rule
		  FROM vm_groups g, inventory_objects o
		  WHERE o.site = $1 AND o.source = $2 AND o.kind = 'vm' AND o.moref = $3) x
		WHERE static OR by_rule
		ORDER BY name`, o.Site, o.Source, o.Moref)
	if err != nil {
		return f, nil, fmt.Errorf("store: vm %s/%s groups: %w", o.Source, o.Moref, err)
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GroupRef, error) {
		var g GroupRef
		err := r.Scan(&g.ID, &g.Name, &g.Static, &g.ByRule)
		return g, err
	})
	if err != nil {
		return f, nil, fmt.Errorf("store: vm %s/%s groups: %w", o.Source, o.Moref, err)
	}
	return f, groups, nil
}
