package realtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Drain is what the ingest ledger says about one agent's recent batches:
// how many were acknowledged (committed) in the window, and how many of
// those were late — their newest sample older than store.LateAfter when
// committed, i.e. backlog from the agent's spool rather than live data.
// Backlog drains at Late / Window: live batches do not shrink it, since the
// agent sends them beside the backlog, not through it.
type Drain struct {
	Acked, Late int64
	Window      time.Duration
}

// Drain reads the ledger of the given agents over the last window (by the
// database's clock). It filters nothing itself: agentIDs must come from a
// read made under the caller's data scope (store.Agents with the caller's
// context), and only those agents are read.
func (h *Hub) Drain(ctx context.Context, agentIDs []string, window time.Duration) (map[string]Drain, error) {
	out := make(map[string]Drain, len(agentIDs))
	if len(agentIDs) == 0 {
		return out, nil
	}
	if h.opts.Pool == nil {
		return nil, errors.New("realtime: drain: no database")
	}
	for _, id := range agentIDs {
		out[id] = Drain{Window: window}
	}
	rows, err := h.opts.Pool.Query(ctx, `SELECT agent_id::text, count(*),
		    count(*) FILTER (WHERE last_ts IS NOT NULL AND received_at - last_ts > $3 * interval '1 millisecond')
		FROM ingest_ledger
		WHERE agent_id = ANY($1::uuid[]) AND received_at > now() - $2 * interval '1 millisecond'
		GROUP BY agent_id`, agentIDs, window.Milliseconds(), store.LateAfter.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("realtime: drain: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		d := Drain{Window: window}
		if err := rows.Scan(&id, &d.Acked, &d.Late); err != nil {
			return nil, fmt.Errorf("realtime: drain: %w", err)
		}
		out[id] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("realtime: drain: %w", err)
	}
	return out, nil
}
