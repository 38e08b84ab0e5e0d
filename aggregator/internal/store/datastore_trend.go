package store

import (
	"context"
	"fmt"
)

// DatastoreFreeSlopeSQL is the rule for a datastore's free space trend, shared
// by the alert engine (datastore.days_until_full) and the fleet overview: a
// least-squares line (regr_slope) through the free space recorded over the
// last 7 days in inventory_changes, the current value in inventory_objects
// included, for datastores with at least 3 points spanning an hour. It
// returns site, source, moref and slope (bytes a second; negative when
// filling) for every site: a caller serving a user joins it under the data
// scope.
const DatastoreFreeSlopeSQL = `
		WITH pts AS (
			SELECT c.site, c.source, c.moref, (c.changes->'props.free'->>'new')::float8 AS free, extract(epoch FROM c.observed_at) AS t
			FROM inventory_changes c
			WHERE c.kind = 'datastore' AND c.observed_at > now() - interval '7 days' AND jsonb_typeof(c.changes->'props.free'->'new') = 'number'
			UNION ALL
			SELECT o.site, o.source, o.moref, (o.props->>'free')::float8, extract(epoch FROM o.observed_at)
			FROM inventory_objects o WHERE o.kind = 'datastore' AND o.deleted_at IS NULL AND jsonb_typeof(o.props->'free') = 'number')
		SELECT site, source, moref, regr_slope(free, t) AS slope FROM pts GROUP BY 1, 2, 3
		HAVING count(*) >= 3 AND max(t) - min(t) >= 3600`

// DaysToFull is how many days free bytes last at slope bytes a second (the
// alert engine's datastore.days_until_full); ok is false without a falling
// trend.
func DaysToFull(free, slope float64) (days float64, ok bool) {
	if slope >= 0 {
		return 0, false
	}
	return free / -slope / 86400, true
}

// DatastoreFill is a datastore of the fleet overview's "closest to full".
type DatastoreFill struct {
	Site, Source, Moref, Name string
	Capacity, Free            int64
	// UsedPercent is (capacity - free) / capacity in percent.
	UsedPercent float64
	// DaysToFull is null without a falling free space trend.
	DaysToFull *float64
}

// DatastoresClosestToFull returns the limit live datastores in the caller's
// data scope closest to full: those with a falling trend first, by days to
// full, then by used percent descending.
func (s *Store) DatastoresClosestToFull(ctx context.Context, limit int) ([]DatastoreFill, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	var a args
	where := sc.siteSQL("o.site", &a)
	lim := a.add(limit)
	rows, err := s.pool.Query(ctx, `
		WITH trend AS (`+DatastoreFreeSlopeSQL+`),
		ds AS (
			SELECT o.site, o.source, o.moref, o.name, (o.props->>'capacity')::float8 AS capacity, (o.props->>'free')::float8 AS free, t.slope
			FROM inventory_objects o LEFT JOIN trend t ON t.site = o.site AND t.source = o.source AND t.moref = o.moref
			WHERE o.kind = 'datastore' AND o.deleted_at IS NULL AND jsonb_typeof(o.props->'capacity') = 'number'
			  AND jsonb_typeof(o.props->'free') = 'number' AND (o.props->>'capacity')::float8 > 0 AND `+where+`)
		SELECT site, source, moref, name, capacity, free, slope, 100 * (capacity - free) / capacity AS used
		FROM ds
		ORDER BY CASE WHEN slope < 0 THEN free / -slope END ASC NULLS LAST, used DESC, site, source, moref
		LIMIT `+lim+`::int`, a...)
	if err != nil {
		return nil, fmt.Errorf("store: datastores closest to full: %w", err)
	}
	defer rows.Close()
	var out []DatastoreFill
	for rows.Next() {
		var d DatastoreFill
		var capacity, free float64
		var slope *float64
		if err := rows.Scan(&d.Site, &d.Source, &d.Moref, &d.Name, &capacity, &free, &slope, &d.UsedPercent); err != nil {
			return nil, fmt.Errorf("store: datastores closest to full: %w", err)
		}
		d.Capacity, d.Free = int64(capacity), int64(free)
		if slope != nil {
			if days, ok := DaysToFull(free, *slope); ok {
				d.DaysToFull = &days
			}
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: datastores closest to full: %w", err)
	}
	return out, nil
}
