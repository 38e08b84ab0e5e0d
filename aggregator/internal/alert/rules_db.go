package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Errors of the alert tables; test them with errors.Is.
var (
	ErrNotFound  = errors.New("alert: not found")
	ErrNameTaken = errors.New("alert: name taken")
	// ErrNotActive refuses to acknowledge or resolve a resolved alert.
	ErrNotActive = errors.New("alert: alert is not active")
	// ErrInUse refuses to delete a channel that rules still name.
	ErrInUse = errors.New("alert: in use")
)

const ruleCols = `id, name, description, entity_kind, severity, enabled, spec, builtin, revision, created_at, updated_at, created_by, updated_by`

func scanRule(row pgx.Row) (Rule, error) {
	var r Rule
	var spec []byte
	var id uuid.UUID
	var name, desc, kind, sev, builtin, cby, uby string
	var enabled bool
	var rev int64
	var r2 Rule
	if err := row.Scan(&id, &name, &desc, &kind, &sev, &enabled, &spec, &builtin, &rev, &r2.CreatedAt, &r2.UpdatedAt, &cby, &uby); err != nil {
		return r, err
	}
	if err := json.Unmarshal(spec, &r); err != nil {
		return r, fmt.Errorf("rule %s: spec: %w", id, err)
	}
	r.ID, r.Name, r.Description, r.EntityKind, r.Severity, r.Enabled, r.Builtin, r.Revision = id, name, desc, kind, sev, enabled, builtin, rev
	r.CreatedAt, r.UpdatedAt, r.CreatedBy, r.UpdatedBy = r2.CreatedAt.UTC(), r2.UpdatedAt.UTC(), cby, uby
	r.Normalize()
	return r, nil
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// RuleFilter filters ListRules.
type RuleFilter struct {
	Kind, Severity, Q string
	Enabled           *bool
	Page, PageSize    int
}

// ListRules lists rules by name.
func (d *DB) ListRules(ctx context.Context, f RuleFilter) ([]Rule, int, error) {
	var args args
	sc, err := ruleScopeSQL(ctx, "alert_rules", &args)
	if err != nil {
		return nil, 0, err
	}
	where := []string{sc}
	add := func(cond string, v any) {
		where = append(where, strings.ReplaceAll(cond, "?", args.add(v)))
	}
	if f.Kind != "" {
		add("entity_kind = ?", f.Kind)
	}
	if f.Severity != "" {
		add("severity = ?", f.Severity)
	}
	if f.Enabled != nil {
		add("enabled = ?", *f.Enabled)
	}
	if f.Q != "" {
		add(`(name ILIKE ? OR description ILIKE ?)`, "%"+likeEscape(f.Q)+"%")
	}
	w := " WHERE " + strings.Join(where, " AND ")
	var total int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM alert_rules`+w, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("alert: list rules: %w", err)
	}
	page, size := pageOf(f.Page, f.PageSize)
	rows, err := d.pool.Query(ctx, `SELECT `+ruleCols+` FROM alert_rules`+w+fmt.Sprintf(` ORDER BY name LIMIT %d OFFSET %d`, size, (page-1)*size), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("alert: list rules: %w", err)
	}
	defer rows.Close()
	out := []Rule{}
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("alert: list rules: %w", err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

func pageOf(page, size int) (int, int) {
	if page < 1 {
		page = 1
	}
	if size < 1 || size > 500 {
		size = 50
	}
	return page, size
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Rule reads one rule visible to the caller's data scope (see
// ruleScopeSQL); another is ErrNotFound, like a missing one.
func (d *DB) Rule(ctx context.Context, id uuid.UUID) (Rule, error) {
	a := args{id}
	sc, err := ruleScopeSQL(ctx, "alert_rules", &a)
	if err != nil {
		return Rule{}, err
	}
	r, err := scanRule(d.pool.QueryRow(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE id = $1 AND `+sc, a...))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("alert: rule %s: %w", id, err)
	}
	return r, nil
}

// checkChannels refuses channel ids that do not exist.
func checkChannels(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := q.Query(ctx, `SELECT id FROM notification_channels WHERE id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("alert: channels: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("alert: channels: %w", err)
	}
	v := &ValidationError{}
	for i, id := range ids {
		ok := false
		for _, f := range found {
			ok = ok || f == id
		}
		if !ok {
			v.add(fmt.Sprintf("channels[%d]", i), FieldUnknownChannel, map[string]any{"name": id.String()})
		}
	}
	return v.err()
}

func specOf(r *Rule) ([]byte, error) {
	spec := *r
	spec.ID = uuid.Nil
	spec.Revision = 0
	spec.CreatedBy, spec.UpdatedBy = "", ""
	return json.Marshal(spec)
}

// ScopeError refuses a rule write that a caller whose data scope is
// limited may not make: a rule it may not change (one not confined by
// scope.sites to the caller's own sites), or a result it could not read
// back (see ruleScopeSQL). Nothing is written.
type ScopeError struct {
	// Fields are the lists of the rule's scope at fault: scope.sites,
	// scope.vm_groups, scope.hosts, scope.clusters, scope.entities.
	Fields []string
}

func (e *ScopeError) Error() string {
	return "alert: rule outside the caller's data scope (" + strings.Join(e.Fields, ", ") + ")"
}

// writableSites reports whether the caller of ctx may write a rule whose
// scope.sites is sites: an unrestricted caller always; a limited one when
// sites is not empty (empty means every site) and each is one of its
// sites. A context without a scope writes nothing (store.ErrNoScope).
func writableSites(ctx context.Context, sites []string) (bool, error) {
	sc, ok := access.From(ctx)
	if !ok {
		return false, store.ErrNoScope
	}
	if sc.Unrestricted() {
		return true, nil
	}
	if len(sites) == 0 {
		return false, nil
	}
	for _, s := range sites {
		if !slices.Contains(sc.Sites, s) {
			return false, nil
		}
	}
	return true, nil
}

// checkWritable refuses a rule scoped to sites that ctx may not write.
func checkWritable(ctx context.Context, sites []string) error {
	ok, err := writableSites(ctx, sites)
	if err != nil {
		return err
	}
	if !ok {
		return &ScopeError{Fields: []string{"scope.sites"}}
	}
	return nil
}

// hiddenFields returns the lists of rule id's scope that hide it from the
// caller of ctx (none: it is visible), read in tx so that it judges what
// tx holds.
func hiddenFields(ctx context.Context, tx pgx.Tx, id uuid.UUID) ([]string, error) {
	a := args{id}
	parts, err := ruleScopeParts(ctx, "r", &a)
	if err != nil || parts == nil {
		return nil, err
	}
	cols := make([]string, len(parts))
	vals := make([]bool, len(parts))
	dst := make([]any, len(parts))
	for i, p := range parts {
		cols[i], dst[i] = p.cond, &vals[i]
	}
	if err := tx.QueryRow(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM alert_rules r WHERE r.id = $1`, a...).Scan(dst...); err != nil {
		return nil, fmt.Errorf("alert: rule %s: scope: %w", id, err)
	}
	var out []string
	for i, v := range vals {
		if !v {
			out = append(out, parts[i].field)
		}
	}
	return out, nil
}

// checkVisible refuses, with a ScopeError naming the lists at fault, a
// rule written in tx that the caller of ctx could not read back.
func checkVisible(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
	hidden, err := hiddenFields(ctx, tx, id)
	if err != nil {
		return err
	}
	if len(hidden) > 0 {
		return &ScopeError{Fields: hidden}
	}
	return nil
}

// lockRule locks rule id for a change by the caller of ctx and returns it
// as stored: a rule the caller cannot see is ErrNotFound, one it sees but
// may not change a ScopeError. Both are judged on the locked row, so a
// concurrent change of the rule cannot slip between check and write.
func lockRule(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Rule, error) {
	old, err := scanRule(tx.QueryRow(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return old, ErrNotFound
	}
	if err != nil {
		return old, fmt.Errorf("alert: rule %s: %w", id, err)
	}
	hidden, err := hiddenFields(ctx, tx, id)
	if err != nil {
		return old, err
	}
	if len(hidden) > 0 {
		return old, ErrNotFound
	}
	return old, checkWritable(ctx, old.Scope.Sites)
}

// CreateRule validates and stores a new rule, returning its id. A caller
// whose data scope is limited gets a ScopeError, and nothing is stored,
// for a rule not confined by scope.sites to its own sites or one it could
// not read back.
func (d *DB) CreateRule(ctx context.Context, r Rule, by string) (uuid.UUID, error) {
	r.Normalize()
	if err := r.Validate(); err != nil {
		return uuid.Nil, err
	}
	if err := checkWritable(ctx, r.Scope.Sites); err != nil {
		return uuid.Nil, err
	}
	if r.ID == uuid.Nil {
		r.ID = uuid.New()
	}
	spec, err := specOf(&r)
	if err != nil {
		return uuid.Nil, err
	}
	err = d.inTx(ctx, func(tx pgx.Tx) error {
		if err := checkChannels(ctx, tx, r.Channels); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO alert_rules (id, name, description, entity_kind, severity, enabled, spec, builtin, created_by, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`, r.ID, r.Name, r.Description, r.EntityKind, r.Severity, r.Enabled, spec, r.Builtin, by)
		if isUnique(err) {
			return ErrNameTaken
		}
		if err != nil {
			return fmt.Errorf("create rule: %w", err)
		}
		return checkVisible(ctx, tx, r.ID)
	})
	if err != nil {
		return uuid.Nil, err
	}
	return r.ID, nil
}

// UpdateRule replaces a rule's definition, under the same conditions as
// CreateRule for both the stored rule and the new one (a rule the caller
// cannot see is ErrNotFound). A rule that is disabled or whose kind
// changes has its active alerts closed (without notification); one whose
// scope changes, those of its alerts that the new scope no longer covers.
func (d *DB) UpdateRule(ctx context.Context, id uuid.UUID, r Rule, by string) error {
	r.Normalize()
	if err := r.Validate(); err != nil {
		return err
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		old, err := lockRule(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkWritable(ctx, r.Scope.Sites); err != nil {
			return err
		}
		if err := checkChannels(ctx, tx, r.Channels); err != nil {
			return err
		}
		r.Builtin = old.Builtin
		spec, err := specOf(&r)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE alert_rules SET name = $2, description = $3, entity_kind = $4, severity = $5, enabled = $6, spec = $7,
			revision = revision + 1, updated_at = now(), updated_by = $8 WHERE id = $1`, id, r.Name, r.Description, r.EntityKind, r.Severity, r.Enabled, spec, by)
		if isUnique(err) {
			return ErrNameTaken
		}
		if err != nil {
			return err
		}
		if err := checkVisible(ctx, tx, id); err != nil {
			return err
		}
		switch {
		case !r.Enabled || old.EntityKind != r.EntityKind:
			return closeRuleAlerts(ctx, tx, id, "rule changed")
		case !sameScope(old.Scope, r.Scope):
			return closeOutsideScope(ctx, tx, id, r.Scope)
		}
		return nil
	})
}

// sameScope reports whether two normalized scopes are the same.
func sameScope(a, b Scope) bool {
	return slices.Equal(a.Sites, b.Sites) && slices.Equal(a.VMGroups, b.VMGroups) && slices.Equal(a.Clusters, b.Clusters) &&
		slices.Equal(a.Hosts, b.Hosts) && slices.Equal(a.Tags, b.Tags) && slices.Equal(a.Entities, b.Entities)
}

// SetRuleEnabled enables or disables a rule (under the conditions of
// UpdateRule); disabling closes its active alerts (without notification)
// and forgets its instances.
func (d *DB) SetRuleEnabled(ctx context.Context, id uuid.UUID, enabled bool, by string) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := lockRule(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE alert_rules SET enabled = $2, revision = revision + 1, updated_at = now(), updated_by = $3 WHERE id = $1`,
			id, enabled, by); err != nil {
			return err
		}
		if !enabled {
			return closeRuleAlerts(ctx, tx, id, "rule disabled")
		}
		return nil
	})
}

// DeleteRule deletes a rule (under the conditions of UpdateRule); its
// alerts stay in the history, closed.
func (d *DB) DeleteRule(ctx context.Context, id uuid.UUID) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := lockRule(ctx, tx, id); err != nil {
			return err
		}
		if err := closeRuleAlerts(ctx, tx, id, "rule deleted"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM alert_rules WHERE id = $1`, id); err != nil {
			return err
		}
		return nil
	})
}

// closeRuleAlerts resolves a rule's active alerts by the system and
// forgets its instances: those in the data scope of ctx (a caller whose
// scope is limited closes nothing beyond it).
func closeRuleAlerts(ctx context.Context, tx pgx.Tx, id uuid.UUID, why string) error {
	return closeWhere(ctx, tx, id, why, func(string, *args) string { return "true" })
}

// closeOutsideScope resolves the active alerts of rule id, and forgets
// the instances, of entities that scope s no longer covers (within the
// data scope of ctx).
func closeOutsideScope(ctx context.Context, tx pgx.Tx, id uuid.UUID, s Scope) error {
	return closeWhere(ctx, tx, id, "outside the rule's new scope", func(alias string, a *args) string {
		return "NOT " + ruleMatchSQL(alias, s, a)
	})
}

// closeWhere resolves the active alerts of rule id, and deletes its
// instances, that cond (on an alerts or alert_states alias) selects
// within the data scope of ctx.
func closeWhere(ctx context.Context, tx pgx.Tx, id uuid.UUID, why string, cond func(alias string, a *args) string) error {
	a := args{id, why}
	sc, err := scopeSQL(ctx, "al", &a)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		WITH closed AS (
			UPDATE alerts al SET state = 'resolved', ends_at = now(), resolved_by = $2, updated_at = now()
			WHERE al.rule_id = $1 AND al.state <> 'resolved' AND `+sc+` AND `+cond("al", &a)+` RETURNING al.id)
		INSERT INTO alert_events (alert_id, kind, at, actor, detail)
		SELECT id, 'closed', now(), 'system', jsonb_build_object('reason', $2::text) FROM closed`, a...); err != nil {
		return fmt.Errorf("alert: close alerts of rule %s: %w", id, err)
	}
	a = args{id}
	if sc, err = scopeSQL(ctx, "st", &a); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM alert_states st WHERE st.rule_id = $1 AND `+sc+` AND `+cond("st", &a), a...); err != nil {
		return fmt.Errorf("alert: forget states of rule %s: %w", id, err)
	}
	return nil
}

// ruleMatchSQL is the condition that scope s covers the entity of the
// alert or instance on alias (columns site, source, entity_kind,
// entity_id), as the engine's match decides it, on the live inventory.
func ruleMatchSQL(alias string, s Scope, a *args) string {
	conds := []string{"true"}
	if len(s.Sites) > 0 {
		conds = append(conds, alias+".site = ANY("+a.add(s.Sites)+"::text[])")
	}
	if len(s.Entities) > 0 {
		conds = append(conds, `(CASE WHEN `+alias+`.entity_kind IN ('site', 'vcenter') THEN `+alias+`.entity_id ELSE `+alias+`.source || ':' || `+alias+`.entity_id END) = ANY(`+
			a.add(s.Entities)+`::text[])`)
	}
	if len(s.VMGroups)+len(s.Clusters)+len(s.Hosts)+len(s.Tags) > 0 {
		inv := []string{`mo.site = ` + alias + `.site`, `mo.source = ` + alias + `.source`, `mo.kind = ` + alias + `.entity_kind`,
			`mo.moref = ` + alias + `.entity_id`, `mo.deleted_at IS NULL`, `mo.kind IN ('vm', 'host', 'cluster', 'datastore')`}
		if len(s.VMGroups) > 0 {
			inv = append(inv, `mo.kind = 'vm' AND EXISTS (SELECT 1 FROM vm_groups mg WHERE mg.id::text = ANY(`+a.add(s.VMGroups)+`::text[]) AND (
				EXISTS (SELECT 1 FROM vm_group_members mm WHERE mm.group_id = mg.id AND mm.site = mo.site AND mm.source = mo.source AND mm.moref = mo.moref)
				OR vm_rule_matches(mg.rule, mo.site, mo.source, mo.moref, mo.name, mo.path, mo.props)))`)
		}
		if len(s.Clusters) > 0 {
			inv = append(inv, `(CASE WHEN mo.kind = 'cluster' THEN mo.moref ELSE coalesce(mo.props->>'cluster_id', '') END) <> ''`,
				`mo.source || ':' || (CASE WHEN mo.kind = 'cluster' THEN mo.moref ELSE mo.props->>'cluster_id' END) = ANY(`+a.add(s.Clusters)+`::text[])`)
		}
		if len(s.Hosts) > 0 {
			inv = append(inv, `(CASE WHEN mo.kind = 'host' THEN mo.moref ELSE coalesce(mo.props->>'host_id', '') END) <> ''`,
				`mo.source || ':' || (CASE WHEN mo.kind = 'host' THEN mo.moref ELSE mo.props->>'host_id' END) = ANY(`+a.add(s.Hosts)+`::text[])`)
		}
		if len(s.Tags) > 0 {
			inv = append(inv, `jsonb_typeof(mo.props->'tags') = 'array'`,
				`EXISTS (SELECT 1 FROM jsonb_array_elements_text(mo.props->'tags') mt WHERE mt = ANY(`+a.add(s.Tags)+`::text[]))`)
		}
		conds = append(conds, `EXISTS (SELECT 1 FROM inventory_objects mo WHERE `+strings.Join(inv, " AND ")+`)`)
	}
	return "(" + strings.Join(conds, " AND ") + ")"
}

func (d *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("alert: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNameTaken) || errors.Is(err, ErrNotActive) || errors.Is(err, ErrInUse) {
			return err
		}
		var v *ValidationError
		var se *ScopeError
		if errors.As(err, &v) || errors.As(err, &se) || errors.Is(err, store.ErrNoScope) {
			return err
		}
		return fmt.Errorf("alert: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("alert: commit: %w", err)
	}
	return nil
}
