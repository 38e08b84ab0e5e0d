package store

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/protocol"
)

type invRow struct {
	kind, moref, name, parent, path string
	props                           map[string]any
	observed                        time.Time
	deleted                         bool
}

// WriteInventory applies an inventory snapshot (Full) or delta to the latest
// state and records every change in inventory_changes. Changes observed
// earlier than what is stored (a backfilled batch arriving after a live one)
// are skipped: the newer observation wins.
func (s *Store) WriteInventory(ctx context.Context, m BatchMeta, inv *protocol.Inventory) (Result, error) {
	if err := s.claimSources(ctx, m.Site, []string{inv.Source}); err != nil {
		return Result{}, err
	}
	at := time.UnixMilli(inv.At).UTC()
	morefs := make([]string, 0, len(inv.Objects))
	for _, o := range inv.Objects {
		if o.Source != "" && o.Source != inv.Source {
			return Result{}, reject(protocol.ErrCodeMalformed, "inventory object %s/%s: source %q differs from batch source %q", o.Kind, o.ID, o.Source, inv.Source)
		}
		morefs = append(morefs, o.ID)
	}
	changed := 0
	dup, err := s.inBatchTx(ctx, m, &at, &at, len(inv.Objects), 0, func(tx pgx.Tx) error {
		q := `SELECT kind, moref, name, parent_moref, path, props, observed_at, deleted_at IS NOT NULL
		      FROM inventory_objects WHERE site = $1 AND source = $2`
		args := []any{m.Site, inv.Source}
		if !inv.Full {
			q += ` AND moref = ANY($3)`
			args = append(args, morefs)
		}
		rows, err := tx.Query(ctx, q+` FOR UPDATE`, args...)
		if err != nil {
			return err
		}
		existing := make(map[string]*invRow)
		for rows.Next() {
			r := &invRow{}
			if err := rows.Scan(&r.kind, &r.moref, &r.name, &r.parent, &r.path, &r.props, &r.observed, &r.deleted); err != nil {
				rows.Close()
				return err
			}
			existing[r.kind+"/"+r.moref] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		b := &pgx.Batch{}
		seen := make(map[string]bool, len(inv.Objects))
		for i := range inv.Objects {
			o := &inv.Objects[i]
			key := o.Kind + "/" + o.ID
			seen[key] = true
			old := existing[key]
			if old != nil && old.observed.After(at) {
				continue
			}
			props := o.Props
			if props == nil {
				props = map[string]any{}
			}
			if o.Deleted {
				if old == nil || old.deleted {
					continue
				}
				b.Queue(`UPDATE inventory_objects SET deleted_at = $5, observed_at = $5, updated_at = now()
				         WHERE site = $1 AND source = $2 AND kind = $3 AND moref = $4`, m.Site, inv.Source, o.Kind, o.ID, at)
				queueChange(b, m.Site, inv.Source, o.Kind, o.ID, "delete", map[string]any{}, at)
				changed++
				continue
			}
			op, diff := "create", map[string]any{"name": o.Name}
			if old != nil && !old.deleted {
				op, diff = "update", diffObject(old, o, props)
				if len(diff) == 0 {
					b.Queue(`UPDATE inventory_objects SET observed_at = $5 WHERE site = $1 AND source = $2 AND kind = $3 AND moref = $4`,
						m.Site, inv.Source, o.Kind, o.ID, at)
					continue
				}
			}
			b.Queue(`
				INSERT INTO inventory_objects (site, source, kind, moref, name, parent_moref, path, props, first_seen, observed_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
				ON CONFLICT (site, source, kind, moref) DO UPDATE SET
					name = EXCLUDED.name, parent_moref = EXCLUDED.parent_moref, path = EXCLUDED.path,
					props = EXCLUDED.props, observed_at = EXCLUDED.observed_at, updated_at = now(), deleted_at = NULL
				-- A concurrent batch may have created the row after our SELECT:
				-- the newer observation still wins.
				WHERE inventory_objects.observed_at <= EXCLUDED.observed_at`,
				m.Site, inv.Source, o.Kind, o.ID, o.Name, o.ParentID, o.Path, props, at)
			queueChange(b, m.Site, inv.Source, o.Kind, o.ID, op, diff, at)
			changed++
		}
		if inv.Full {
			for key, old := range existing {
				if seen[key] || old.deleted || old.observed.After(at) {
					continue
				}
				b.Queue(`UPDATE inventory_objects SET deleted_at = $5, observed_at = $5, updated_at = now()
				         WHERE site = $1 AND source = $2 AND kind = $3 AND moref = $4`, m.Site, inv.Source, old.kind, old.moref, at)
				queueChange(b, m.Site, inv.Source, old.kind, old.moref, "delete", map[string]any{}, at)
				changed++
			}
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return Result{}, fmt.Errorf("store: write inventory: %w", asReject(err))
	}
	return Result{Duplicate: dup, Rows: changed}, nil
}

func queueChange(b *pgx.Batch, site, source, kind, moref, op string, diff map[string]any, at time.Time) {
	b.Queue(`INSERT INTO inventory_changes (site, source, kind, moref, op, changes, observed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		site, source, kind, moref, op, diff, at)
}

// diffObject returns {field: {"old": x, "new": y}} for every field that changed.
func diffObject(old *invRow, o *protocol.InventoryObject, props map[string]any) map[string]any {
	diff := map[string]any{}
	add := func(field string, a, b any) { diff[field] = map[string]any{"old": a, "new": b} }
	if old.name != o.Name {
		add("name", old.name, o.Name)
	}
	if old.parent != o.ParentID {
		add("parent_id", old.parent, o.ParentID)
	}
	if old.path != o.Path {
		add("path", old.path, o.Path)
	}
	for k, v := range props {
		if ov, ok := old.props[k]; !ok || !reflect.DeepEqual(normalize(ov), normalize(v)) {
			add("props."+k, old.props[k], v)
		}
	}
	for k, ov := range old.props {
		if _, ok := props[k]; !ok {
			add("props."+k, ov, nil)
		}
	}
	return diff
}

// normalize makes values decoded from jsonb and from the wire comparable:
// both come from encoding/json, but integers sent as Go ints in tests or by
// future encoders compare equal to their float64 form.
func normalize(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	}
	return v
}
