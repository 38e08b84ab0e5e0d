package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// A site's history of being online (agent_sessions, migration 009), its
// backfill periods (batches that arrived late, from the ingest ledger) and
// its gap records: the site timeline, and the "site offline" cause of a
// chart's gaps.

// CauseSiteOffline: no agent of the site was connected, so whatever was
// collected then is still in the agent's spool (it arrives when the site
// is back) or was lost (then a gap record says so).
const CauseSiteOffline = "site_offline"

// LateAfter is how old a batch's newest sample must be when it is stored
// for the batch to count as backfill rather than live data.
const LateAfter = 2 * time.Minute

// Session is one connection of an agent, from its hello to its end. End is
// nil while it lasts. An end the holding replica never recorded (it died)
// is the agent's last sign of life, with reason "lost".
type Session struct {
	AgentID, AgentName string
	From               time.Time
	To                 *time.Time
	EndReason          string
}

// Period is a stretch of time.
type Period struct{ From, To time.Time }

// Backfill is a stretch in which the site's agents delivered late data
// (a backlog draining): when it arrived, which data it was, how much.
type Backfill struct {
	From, To         time.Time // arrival
	DataFrom, DataTo time.Time // the samples' own times
	Batches          int64
}

// GapRecord is data an agent recorded as lost.
type GapRecord struct {
	AgentID        string
	From, To       time.Time
	Batches, Bytes int64
	Reason         string
}

// Timeline is a site's history over a range.
type Timeline struct {
	Sessions []Session
	// Offline are the stretches of the range with no session of any of
	// the site's agents, from the site's first session on.
	Offline   []Period
	Backfills []Backfill
	Gaps      []GapRecord
}

// sessionEnd is the SQL end of a session on alias x: its recorded end, or
// when its replica died, its last sign of life; NULL while it lasts.
const sessionEnd = `coalesce(x.ended_at, CASE WHEN x.lease_until > now() THEN NULL ELSE x.last_seen END)`

// sessions returns the sessions of site's agents overlapping [from, to).
func (s *Store) sessions(ctx context.Context, site string, from, to time.Time) ([]Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT x.agent_id::text, coalesce(g.name, ''), x.connected_at, `+sessionEnd+`,
		    CASE WHEN x.ended_at IS NOT NULL THEN x.end_reason WHEN x.lease_until > now() THEN '' ELSE 'lost' END
		FROM agent_sessions x LEFT JOIN agents g ON g.id = x.agent_id
		WHERE x.site = $1 AND x.connected_at < $3 AND coalesce(`+sessionEnd+`, 'infinity') >= $2
		ORDER BY x.connected_at, x.id`, site, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: sessions of site %s: %w", site, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
		var x Session
		err := r.Scan(&x.AgentID, &x.AgentName, &x.From, &x.To, &x.EndReason)
		x.From = x.From.UTC()
		if x.To != nil {
			t := x.To.UTC()
			x.To = &t
		}
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: sessions of site %s: %w", site, err)
	}
	return out, nil
}

// offline is the complement of the sessions within [from, to), starting no
// earlier than the site's first session ever (before it, the site was not
// monitored yet, which is not "offline").
func (s *Store) offline(ctx context.Context, site string, sessions []Session, from, to time.Time) ([]Period, error) {
	var first *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(connected_at) FROM agent_sessions WHERE site = $1`, site).Scan(&first); err != nil {
		return nil, fmt.Errorf("store: sessions of site %s: %w", site, err)
	}
	if first == nil {
		return []Period{}, nil
	}
	start := from
	if first.After(start) {
		start = *first
	}
	now := time.Now()
	if to.After(now) {
		to = now
	}
	out := []Period{}
	cur := start
	sorted := slices.Clone(sessions)
	slices.SortFunc(sorted, func(a, b Session) int { return a.From.Compare(b.From) })
	for _, x := range sorted {
		if x.From.After(cur) && cur.Before(to) {
			out = append(out, Period{From: cur, To: minT(x.From, to)})
		}
		end := to
		if x.To != nil {
			end = *x.To
		}
		if end.After(cur) {
			cur = end
		}
	}
	if cur.Before(to) {
		out = append(out, Period{From: cur, To: to})
	}
	return out, nil
}

func minT(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// SiteTimeline returns the history of a site in the caller's data scope
// over [from, to), or ErrNotFound.
func (s *Store) SiteTimeline(ctx context.Context, site string, from, to time.Time) (Timeline, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return Timeline{}, err
	}
	if !sc.allowsSite(site) {
		return Timeline{}, ErrNotFound
	}
	var tl Timeline
	if tl.Sessions, err = s.sessions(ctx, site, from, to); err != nil {
		return Timeline{}, err
	}
	if tl.Offline, err = s.offline(ctx, site, tl.Sessions, from, to); err != nil {
		return Timeline{}, err
	}
	// Late batches, grouped into stretches that are no more than LateAfter
	// apart in arrival.
	rows, err := s.pool.Query(ctx, `WITH late AS (
		    SELECT l.received_at, l.first_ts, l.last_ts
		    FROM ingest_ledger l JOIN agents g ON g.id = l.agent_id
		    WHERE g.site = $1 AND l.received_at >= $2 AND l.received_at < $3 AND l.last_ts IS NOT NULL
		      AND l.received_at - l.last_ts > $4 * interval '1 millisecond'
		), marked AS (
		    SELECT *, CASE WHEN received_at - lag(received_at) OVER (ORDER BY received_at) <= $4 * interval '1 millisecond'
		              THEN 0 ELSE 1 END AS starts FROM late
		), grouped AS (
		    SELECT *, sum(starts) OVER (ORDER BY received_at) AS grp FROM marked
		)
		SELECT min(received_at), max(received_at), min(first_ts), max(last_ts), count(*) FROM grouped GROUP BY grp ORDER BY 1`,
		site, from, to, LateAfter.Milliseconds())
	if err != nil {
		return Timeline{}, fmt.Errorf("store: backfills of site %s: %w", site, err)
	}
	tl.Backfills, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Backfill, error) {
		var b Backfill
		err := r.Scan(&b.From, &b.To, &b.DataFrom, &b.DataTo, &b.Batches)
		b.From, b.To, b.DataFrom, b.DataTo = b.From.UTC(), b.To.UTC(), b.DataFrom.UTC(), b.DataTo.UTC()
		return b, err
	})
	if err != nil {
		return Timeline{}, fmt.Errorf("store: backfills of site %s: %w", site, err)
	}
	rows, err = s.pool.Query(ctx, `SELECT agent_id::text, first_ts, last_ts, batches, bytes, reason FROM ingest_gaps
		WHERE site = $1 AND first_ts IS NOT NULL AND last_ts IS NOT NULL AND first_ts < $3 AND last_ts >= $2 ORDER BY first_ts`, site, from, to)
	if err != nil {
		return Timeline{}, fmt.Errorf("store: gaps of site %s: %w", site, err)
	}
	tl.Gaps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (GapRecord, error) {
		var g GapRecord
		err := r.Scan(&g.AgentID, &g.From, &g.To, &g.Batches, &g.Bytes, &g.Reason)
		g.From, g.To = g.From.UTC(), g.To.UTC()
		return g, err
	})
	if err != nil {
		return Timeline{}, fmt.Errorf("store: gaps of site %s: %w", site, err)
	}
	return tl, nil
}
