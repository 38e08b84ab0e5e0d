package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
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
	w := ""
	if len(where) > 0 {
		w = " WHERE " + strings.Join(where, " AND ")
	}
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

// Rule reads one rule.
func (d *DB) Rule(ctx context.Context, id uuid.UUID) (Rule, error) {
	r, err := scanRule(d.pool.QueryRow(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE id = $1`, id))
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

// CreateRule validates and stores a new rule, returning its id.
func (d *DB) CreateRule(ctx context.Context, r Rule, by string) (uuid.UUID, error) {
	r.Normalize()
	if err := r.Validate(); err != nil {
		return uuid.Nil, err
	}
	if err := checkChannels(ctx, d.pool, r.Channels); err != nil {
		return uuid.Nil, err
	}
	if r.ID == uuid.Nil {
		r.ID = uuid.New()
	}
	spec, err := specOf(&r)
	if err != nil {
		return uuid.Nil, err
	}
	_, err = d.pool.Exec(ctx, `INSERT INTO alert_rules (id, name, description, entity_kind, severity, enabled, spec, builtin, created_by, updated_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`, r.ID, r.Name, r.Description, r.EntityKind, r.Severity, r.Enabled, spec, r.Builtin, by)
	if isUnique(err) {
		return uuid.Nil, ErrNameTaken
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("alert: create rule: %w", err)
	}
	return r.ID, nil
}

// UpdateRule replaces a rule's definition. A rule whose kind changes, or
// that is disabled, has its active alerts closed (without notification).
func (d *DB) UpdateRule(ctx context.Context, id uuid.UUID, r Rule, by string) error {
	r.Normalize()
	if err := r.Validate(); err != nil {
		return err
	}
	if err := checkChannels(ctx, d.pool, r.Channels); err != nil {
		return err
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		var oldKind, builtin string
		err := tx.QueryRow(ctx, `SELECT entity_kind, builtin FROM alert_rules WHERE id = $1 FOR UPDATE`, id).Scan(&oldKind, &builtin)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		r.Builtin = builtin
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
		if !r.Enabled || oldKind != r.EntityKind {
			return closeRuleAlerts(ctx, tx, id, "rule changed")
		}
		return nil
	})
}

// SetRuleEnabled enables or disables a rule; disabling closes its active
// alerts (without notification) and forgets its instances.
func (d *DB) SetRuleEnabled(ctx context.Context, id uuid.UUID, enabled bool, by string) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE alert_rules SET enabled = $2, revision = revision + 1, updated_at = now(), updated_by = $3 WHERE id = $1`, id, enabled, by)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if !enabled {
			return closeRuleAlerts(ctx, tx, id, "rule disabled")
		}
		return nil
	})
}

// DeleteRule deletes a rule; its alerts stay in the history, closed.
func (d *DB) DeleteRule(ctx context.Context, id uuid.UUID) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if err := closeRuleAlerts(ctx, tx, id, "rule deleted"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM alert_rules WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// closeRuleAlerts resolves a rule's active alerts by the system and
// forgets its instances.
func closeRuleAlerts(ctx context.Context, tx pgx.Tx, id uuid.UUID, why string) error {
	if _, err := tx.Exec(ctx, `
		WITH closed AS (
			UPDATE alerts SET state = 'resolved', ends_at = now(), resolved_by = $2, updated_at = now()
			WHERE rule_id = $1 AND state <> 'resolved' RETURNING id)
		INSERT INTO alert_events (alert_id, kind, at, actor, detail)
		SELECT id, 'closed', now(), 'system', jsonb_build_object('reason', $2::text) FROM closed`, id, why); err != nil {
		return fmt.Errorf("alert: close alerts of rule %s: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM alert_states WHERE rule_id = $1`, id); err != nil {
		return fmt.Errorf("alert: forget states of rule %s: %w", id, err)
	}
	return nil
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
		if errors.As(err, &v) {
			return err
		}
		return fmt.Errorf("alert: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("alert: commit: %w", err)
	}
	return nil
}
