package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SourceVCenter is the Source of the records made from vCenter events.
const SourceVCenter = "vcenter"

// VCenterOptions configure AppendVCenterEvents.
type VCenterOptions struct {
	// Settle is how long after it was stored an event waits before it is
	// appended, so that batches committed at about the same time (several
	// sites, the live and backfill streams of one agent) are appended
	// together in vCenter-time order. 0 means 5s.
	Settle time.Duration
	// BatchSize is how many events one transaction appends; 0 means 1000.
	BatchSize int
	// MaxPerRun bounds the events one call appends (the rest wait for the
	// next call); 0 means 100,000.
	MaxPerRun int
}

// VCenterReport is what one AppendVCenterEvents call did.
type VCenterReport struct {
	Appended int `json:"appended"`
	// Late counts events appended after a newer event of their site was
	// already in the chain (an offline site's backlog).
	Late int `json:"late"`
	// Pending counts the events left for a later call (MaxPerRun reached,
	// or stored less than Settle ago).
	Pending int64 `json:"pending"`
	// LastSeq is the sequence number of the last record appended (0 for
	// none).
	LastSeq int64 `json:"last_seq,omitempty"`
}

// AppendVCenterEvents appends the vCenter events agents forwarded
// (vcenter_events) that are not in the operation log yet, as records with
// Source "vcenter": time is the event's vCenter time, the actor the
// vCenter user, the action "vcenter.<EventType>", the resource the event's
// entity ("<source>:<moref>", as the API names objects), and the summary
// the event's site, vCenter, key, chain, message, severity, entity name,
// datacenter and extra fields.
//
// Exactly once: each transaction takes the chain head's row lock first
// (so appenders on several replicas, and the API's Writer, are serialized),
// then reads pending events, links and stores their records and sets
// their audit_seq — one transaction, so an event is either pending or in
// the chain, and a crash or a restart at any point neither loses nor
// repeats one.
//
// Order: the events one transaction appends are in (vCenter time, site,
// vCenter, key) order, and they are the oldest pending ones. Events keep
// arriving, though: an event stored after newer events of the chain were
// appended (an offline site's backlog, or the agent's backfill stream
// delivering after its live stream) is appended at the next call, after
// them, with "late": true in its summary. The chain's order is thus the
// order events became known to the aggregator, and within that, vCenter
// time; a record's time is always the vCenter time.
//
// It never touches the ingest path: ingest only inserts into
// vcenter_events, and the appender's transactions are short (one batch).
func AppendVCenterEvents(ctx context.Context, pool *pgxpool.Pool, opts VCenterOptions) (VCenterReport, error) {
	if opts.Settle <= 0 {
		opts.Settle = 5 * time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.MaxPerRun <= 0 {
		opts.MaxPerRun = 100_000
	}
	var rep VCenterReport
	for rep.Appended < opts.MaxPerRun {
		n, late, last, err := appendVCenterBatch(ctx, pool, opts.Settle, min(opts.BatchSize, opts.MaxPerRun-rep.Appended))
		if err != nil {
			return rep, err
		}
		rep.Appended += n
		rep.Late += late
		if last > 0 {
			rep.LastSeq = last
		}
		if n == 0 {
			break
		}
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM vcenter_events WHERE audit_seq IS NULL`).Scan(&rep.Pending); err != nil {
		return rep, fmt.Errorf("audit: vcenter events pending: %w", err)
	}
	return rep, nil
}

// vcenterEvent is a pending row of vcenter_events.
type vcenterEvent struct {
	site, source                                        string
	key, chainID                                        int64
	typ                                                 string
	time                                                time.Time
	user, message, severity, kind, id, name, datacenter string
	extra                                               []byte
}

// appendVCenterBatch appends up to limit pending events in one transaction.
func appendVCenterBatch(ctx context.Context, pool *pgxpool.Pool, settle time.Duration, limit int) (n, late int, lastSeq int64, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		n, late, lastSeq = 0, 0, 0
		// The chain head first: whoever holds it is the only appender, so
		// no two transactions read the same pending events.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM audit_chain WHERE id = 1 FOR UPDATE`); err != nil {
			return fmt.Errorf("audit: lock chain head: %w", err)
		}
		rows, err := tx.Query(ctx, `
			SELECT site, source, key, chain_id, type, time, username, message, severity, entity_kind, entity_id, entity_name,
			       datacenter, extra::text
			FROM vcenter_events
			WHERE audit_seq IS NULL AND received_at <= now() - $1::bigint * interval '1 microsecond'
			ORDER BY time, site, source, key
			LIMIT $2`, settle.Microseconds(), limit)
		if err != nil {
			return fmt.Errorf("audit: read vcenter events: %w", err)
		}
		var evs []vcenterEvent
		for rows.Next() {
			var e vcenterEvent
			var extra string
			if err := rows.Scan(&e.site, &e.source, &e.key, &e.chainID, &e.typ, &e.time, &e.user, &e.message, &e.severity,
				&e.kind, &e.id, &e.name, &e.datacenter, &extra); err != nil {
				rows.Close()
				return fmt.Errorf("audit: read vcenter events: %w", err)
			}
			e.extra = []byte(extra)
			evs = append(evs, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: read vcenter events: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		marks := map[string]time.Time{}
		sites := []string{}
		for _, e := range evs {
			if _, ok := marks[e.site]; !ok {
				marks[e.site] = time.Time{}
				sites = append(sites, e.site)
			}
		}
		mrows, err := tx.Query(ctx, `SELECT site, last_time FROM vcenter_audit_marks WHERE site = ANY($1)`, sites)
		if err != nil {
			return fmt.Errorf("audit: read vcenter marks: %w", err)
		}
		for mrows.Next() {
			var s string
			var t time.Time
			if err := mrows.Scan(&s, &t); err != nil {
				mrows.Close()
				return fmt.Errorf("audit: read vcenter marks: %w", err)
			}
			marks[s] = t
		}
		mrows.Close()
		if err := mrows.Err(); err != nil {
			return fmt.Errorf("audit: read vcenter marks: %w", err)
		}
		recs := make([]*Record, len(evs))
		for i, e := range evs {
			isLate := e.time.Before(marks[e.site])
			if isLate {
				late++
			}
			r := vcenterRecord(e, isLate)
			recs[i] = &r
		}
		if err := appendInTx(ctx, tx, recs); err != nil {
			return err
		}
		sitesCol, sources, keys, seqs := make([]string, len(evs)), make([]string, len(evs)), make([]int64, len(evs)), make([]int64, len(evs))
		for i, e := range evs {
			sitesCol[i], sources[i], keys[i], seqs[i] = e.site, e.source, e.key, recs[i].Seq
		}
		tag, err := tx.Exec(ctx, `
			UPDATE vcenter_events e SET audit_seq = v.seq
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(site, source, key, seq)
			WHERE e.site = v.site AND e.source = v.source AND e.key = v.key AND e.audit_seq IS NULL`,
			sitesCol, sources, keys, seqs)
		if err != nil {
			return fmt.Errorf("audit: mark vcenter events: %w", err)
		}
		if tag.RowsAffected() != int64(len(evs)) {
			// Cannot happen while the chain head is held; refuse rather
			// than store a record twice.
			return fmt.Errorf("audit: mark vcenter events: %d of %d rows changed", tag.RowsAffected(), len(evs))
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO vcenter_audit_marks (site, last_time, last_seq)
			SELECT site, max(time), max(seq) FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS v(site, time, seq) GROUP BY site
			ON CONFLICT (site) DO UPDATE SET last_time = greatest(vcenter_audit_marks.last_time, EXCLUDED.last_time),
				last_seq = EXCLUDED.last_seq, updated_at = now()`,
			sitesCol, eventTimes(evs), seqs); err != nil {
			return fmt.Errorf("audit: move vcenter marks: %w", err)
		}
		n, lastSeq = len(evs), recs[len(recs)-1].Seq
		return nil
	})
	return n, late, lastSeq, err
}

func eventTimes(evs []vcenterEvent) []time.Time {
	out := make([]time.Time, len(evs))
	for i, e := range evs {
		out[i] = e.time
	}
	return out
}

// vcenterRecord is the operation-log record of a vCenter event.
func vcenterRecord(e vcenterEvent, late bool) Record {
	sum := map[string]any{
		"site": e.site, "vcenter": e.source, "key": e.key, "type": e.typ, "message": e.message,
	}
	if e.chainID != 0 {
		sum["chain_id"] = e.chainID
	}
	for k, v := range map[string]string{"severity": e.severity, "entity_name": e.name, "datacenter": e.datacenter} {
		if v != "" {
			sum[k] = v
		}
	}
	if len(e.extra) > 0 && string(e.extra) != "{}" {
		var x any
		if json.Unmarshal(e.extra, &x) == nil {
			sum["extra"] = Redact(x)
		}
	}
	if late {
		sum["late"] = true
	}
	b, _ := json.Marshal(sum)
	resID := ""
	if e.id != "" {
		resID = e.source + ":" + e.id
	}
	r := Record{
		Time: e.time, Source: SourceVCenter, ActorType: "vcenter", ActorName: e.user,
		Action: "vcenter." + e.typ, ResourceType: e.kind, ResourceID: resID, Summary: b, Result: ResultSuccess,
		// The event's identity, unique in the log: site, vCenter and key.
		RequestID: "vcenter:" + e.site + ":" + e.source + ":" + strconv.FormatInt(e.key, 10),
	}
	r.normalize()
	return r
}
