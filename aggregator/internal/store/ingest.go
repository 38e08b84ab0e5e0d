package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/vmpulse/vmpulse/protocol"
)

// BatchMeta identifies a batch and its sender for the ledger. Site comes from
// the sender's certificate, never from the payload.
type BatchMeta struct {
	AgentID string // UUID
	Site    string
	Epoch   uint64
	Seq     uint64
	Kind    protocol.BatchKind
	Bytes   int    // encoded size on the wire
	Digest  []byte // of the payload, to tell a redelivery from a reused seq; may be nil
}

// Result says what a write did.
type Result struct {
	// Duplicate is true when the ledger already had this batch: nothing was
	// written and the batch should be acknowledged again.
	Duplicate bool
	// Rows and Samples count what the batch carried.
	Rows, Samples int
	// Overlapping counts sample rows that were already stored by another
	// batch (the unique key's second line of defence) and were skipped.
	Overlapping int
}

// Bounds on sample timestamps: anything outside is a broken clock or a
// broken sender, and would create absurd partitions.
var (
	minSampleTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxFutureSkew = 7 * 24 * time.Hour
	// maxBatchSpan bounds the data time range of one samples batch: agents
	// send polls and hour-long re-reads; a wider batch is broken and would
	// create a partition per day it spans.
	maxBatchSpan = 31 * 24 * time.Hour
)

// WriteSamples stores a samples batch exactly once. The fast path proves the
// batch new through the ledger and copies its rows in with COPY; if some rows
// were already stored by another batch (an agent that re-read a gap from
// vCenter), it falls back to a staging table and ON CONFLICT DO NOTHING.
func (s *Store) WriteSamples(ctx context.Context, m BatchMeta, p *protocol.Samples) (Result, error) {
	if err := s.claimSources(ctx, m.Site, samplesSources(p)); err != nil {
		return Result{}, err
	}
	var res Result
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for i := range p.Series {
		sd := &p.Series[i]
		res.Rows += len(sd.Timestamps)
		if n := len(sd.Timestamps); n > 0 {
			lo = min(lo, sd.Timestamps[0])
			hi = max(hi, sd.Timestamps[n-1])
		}
	}
	res.Samples = p.Count()
	var first, last *time.Time
	if res.Rows > 0 {
		f, l := time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC()
		oldest := minSampleTime
		if s.maxAge > 0 {
			oldest = time.Now().Add(-s.maxAge) // older data would be dropped by retention anyway
		}
		switch {
		case f.Before(oldest) || l.After(time.Now().Add(maxFutureSkew)):
			return Result{}, reject(protocol.ErrCodeMalformed, "sample timestamps %s..%s outside the accepted range %s..now+%s",
				f.Format(time.RFC3339), l.Format(time.RFC3339), oldest.Format(time.RFC3339), maxFutureSkew)
		case l.Sub(f) > maxBatchSpan:
			return Result{}, reject(protocol.ErrCodeMalformed, "sample timestamps span %s, more than %s", l.Sub(f), maxBatchSpan)
		}
		first, last = &f, &l
		if err := s.EnsurePartitions(ctx, f, l); err != nil {
			return Result{}, err
		}
	}
	ids, err := s.resolveSeries(ctx, m.Site, p.Series)
	if err != nil {
		return Result{}, err
	}
	src := &sampleSource{series: p.Series, ids: ids}
	dup, err := s.inBatchTx(ctx, m, first, last, res.Rows, res.Samples, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"samples"}, []string{"series_id", "ts", "v"}, src)
		return err
	})
	if err != nil && isNoPartition(err) && first != nil {
		// Another aggregator's retention dropped a partition this process
		// still had cached: forget those days, recreate, retry once.
		s.forgetPartitions(*first, *last)
		if err = s.EnsurePartitions(ctx, *first, *last); err == nil {
			src.reset()
			dup, err = s.inBatchTx(ctx, m, first, last, res.Rows, res.Samples, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"samples"}, []string{"series_id", "ts", "v"}, src)
				return err
			})
		}
	}
	if err != nil && isUniqueViolation(err) {
		src.reset()
		dup, err = s.inBatchTx(ctx, m, first, last, res.Rows, res.Samples, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE samples_stage (LIKE samples) ON COMMIT DROP`); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"samples_stage"}, []string{"series_id", "ts", "v"}, src); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `INSERT INTO samples SELECT * FROM samples_stage ON CONFLICT DO NOTHING`)
			if err != nil {
				return err
			}
			res.Overlapping = res.Rows - int(tag.RowsAffected())
			return nil
		})
	}
	if err != nil {
		return Result{}, fmt.Errorf("store: write samples %s/%d/%d: %w", m.AgentID, m.Epoch, m.Seq, asReject(err))
	}
	res.Duplicate = dup
	return res, nil
}

// inBatchTx runs fn in a transaction that first inserts the batch's ledger
// row. If the ledger already has it, nothing runs and dup is true.
func (s *Store) inBatchTx(ctx context.Context, m BatchMeta, first, last *time.Time, rows, samples int, fn func(pgx.Tx) error) (dup bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `
		INSERT INTO ingest_ledger (agent_id, epoch, seq, kind, first_ts, last_ts, rows, samples, bytes, digest)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT DO NOTHING`,
		m.AgentID, int64(m.Epoch), int64(m.Seq), int16(m.Kind), first, last, rows, samples, m.Bytes, m.Digest)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 0 {
		// Seen before: a redelivery, unless the content differs.
		var stored []byte
		if err := tx.QueryRow(ctx, `SELECT digest FROM ingest_ledger WHERE agent_id = $1 AND epoch = $2 AND seq = $3`,
			m.AgentID, int64(m.Epoch), int64(m.Seq)).Scan(&stored); err != nil {
			return false, err
		}
		if stored != nil && m.Digest != nil && !bytes.Equal(stored, m.Digest) {
			return false, reject(protocol.ErrCodeSeqReuse, "batch %d/%d was already stored with different content: the agent's spool reused the seq", m.Epoch, m.Seq)
		}
		return true, nil
	}
	if err := fn(tx); err != nil {
		return false, err
	}
	return false, tx.Commit(ctx)
}

// sampleSource feeds COPY one row per (series, timestamp) without building
// the rows up front. Values share one backing array per batch.
type sampleSource struct {
	series []protocol.SeriesData
	ids    []int64
	si, pi int
	row    [3]any
	buf    []float32       // rows without gaps: pgx's fast float4 path
	nbuf   []pgtype.Float4 // rows with a missing value: NULL elements
	err    error
}

func (src *sampleSource) reset() { src.si, src.pi, src.buf, src.nbuf = 0, 0, nil, nil }

func (src *sampleSource) Next() bool {
	for src.si < len(src.series) {
		sd := &src.series[src.si]
		if src.pi < len(sd.Timestamps) {
			return true
		}
		src.si++
		src.pi = 0
	}
	return false
}

func (src *sampleSource) Values() ([]any, error) {
	sd := &src.series[src.si]
	i := src.pi
	src.pi++
	n := len(sd.Values)
	src.row[0] = src.ids[src.si]
	src.row[1] = time.UnixMilli(sd.Timestamps[i]).UTC()
	gaps := false
	for c := 0; c < n; c++ {
		if math.IsNaN(sd.Values[c][i]) {
			gaps = true
			break
		}
	}
	if !gaps {
		if len(src.buf) < n {
			src.buf = make([]float32, max(n, 8192))
		}
		vals := src.buf[:n:n]
		src.buf = src.buf[n:]
		for c := 0; c < n; c++ {
			vals[c] = float32(sd.Values[c][i])
		}
		src.row[2] = vals
		return src.row[:], nil
	}
	if len(src.nbuf) < n {
		src.nbuf = make([]pgtype.Float4, max(n, 1024))
	}
	vals := src.nbuf[:n:n]
	src.nbuf = src.nbuf[n:]
	for c := 0; c < n; c++ {
		v := sd.Values[c][i]
		vals[c] = pgtype.Float4{Float32: float32(v), Valid: !math.IsNaN(v)}
	}
	src.row[2] = vals
	return src.row[:], nil
}

func (src *sampleSource) Err() error { return src.err }

func samplesSources(p *protocol.Samples) []string {
	var out []string
	for i := range p.Series {
		s := p.Series[i].Key.Source
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// claimSources binds each source to the site on first sight and refuses a
// source that belongs to another site.
func (s *Store) claimSources(ctx context.Context, site string, sources []string) error {
	for _, src := range sources {
		if src == "" {
			return reject(protocol.ErrCodeMalformed, "empty source")
		}
		s.mu.Lock()
		owner, ok := s.sources[src]
		s.mu.Unlock()
		if !ok {
			err := s.pool.QueryRow(ctx, `
				WITH ins AS (
					INSERT INTO sources (source, site) VALUES ($1, $2)
					ON CONFLICT (source) DO NOTHING RETURNING site)
				SELECT site FROM ins UNION ALL SELECT site FROM sources WHERE source = $1
				LIMIT 1`, src, site).Scan(&owner)
			if err != nil {
				return fmt.Errorf("store: claim source %q: %w", src, err)
			}
			s.mu.Lock()
			s.sources[src] = owner
			s.mu.Unlock()
		}
		if owner != site {
			return reject(protocol.ErrCodeForbidden, "source %q belongs to site %q, not %q", src, owner, site)
		}
	}
	return nil
}

// WriteGap records data an agent lost, exactly once. A spool gap that
// widens an earlier one (same epoch and from_seq, larger to_seq) replaces
// it; an older, narrower one arriving late does not. A collection gap (one
// with a Source: samples the agent could not read from vCenter) drops no
// batch and has no seqs of its own: it is keyed by the batch that carries
// it, and its source must belong to the agent's site.
func (s *Store) WriteGap(ctx context.Context, m BatchMeta, g *protocol.Gap) (Result, error) {
	var first, last *time.Time
	if g.First != 0 {
		t := time.UnixMilli(g.First).UTC()
		first = &t
	}
	if g.Last != 0 {
		t := time.UnixMilli(g.Last).UTC()
		last = &t
	}
	if g.Source != "" {
		if err := s.claimSources(ctx, m.Site, []string{g.Source}); err != nil {
			return Result{}, err
		}
	}
	dup, err := s.inBatchTx(ctx, m, first, last, 1, 0, func(tx pgx.Tx) error {
		if g.Source != "" {
			_, err := tx.Exec(ctx, `
				INSERT INTO ingest_gaps (agent_id, site, epoch, from_seq, to_seq, batches, bytes, first_ts, last_ts, reason, detected_at,
				                         source, entity_kind, entity_ids, counters, interval_s)
				VALUES ($1, $2, $3, $4, $4, 0, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13)
				ON CONFLICT DO NOTHING`,
				m.AgentID, m.Site, int64(m.Epoch), int64(m.Seq), first, last, g.Reason, time.UnixMilli(g.Detected).UTC(),
				g.Source, nullString(g.EntityKind), nullStrings(g.EntityIDs), nullStrings(g.Counters), nullInterval(g.Interval))
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest_gaps (agent_id, site, epoch, from_seq, to_seq, batches, bytes, first_ts, last_ts, reason, detected_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (agent_id, epoch, from_seq) DO UPDATE SET
				to_seq = EXCLUDED.to_seq, batches = EXCLUDED.batches, bytes = EXCLUDED.bytes,
				first_ts = EXCLUDED.first_ts, last_ts = EXCLUDED.last_ts, reason = EXCLUDED.reason,
				detected_at = EXCLUDED.detected_at, received_at = now()
			WHERE ingest_gaps.to_seq <= EXCLUDED.to_seq`,
			m.AgentID, m.Site, int64(g.Epoch), int64(g.FromSeq), int64(g.ToSeq), int64(g.Batches), int64(g.Bytes),
			first, last, g.Reason, time.UnixMilli(g.Detected).UTC())
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("store: write gap: %w", asReject(err))
	}
	return Result{Duplicate: dup, Rows: 1}, nil
}

// nullString, nullStrings and nullInterval store a collection gap's
// "unspecified" (empty, 0) as NULL, so that NULL alone means "all".
func nullString(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

func nullStrings(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}

func nullInterval(v int32) *int32 {
	if v == 0 {
		return nil
	}
	return &v
}

// WriteEvents stores vCenter events, each (site, source, key) once.
func (s *Store) WriteEvents(ctx context.Context, m BatchMeta, ev *protocol.Events) (Result, error) {
	srcs := make([]string, 0, 1)
	seen := map[string]bool{}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, e := range ev.Events {
		if !seen[e.Source] {
			seen[e.Source] = true
			srcs = append(srcs, e.Source)
		}
		lo, hi = min(lo, e.Time), max(hi, e.Time)
	}
	if err := s.claimSources(ctx, m.Site, srcs); err != nil {
		return Result{}, err
	}
	var first, last *time.Time
	if len(ev.Events) > 0 {
		f, l := time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC()
		first, last = &f, &l
	}
	dup, err := s.inBatchTx(ctx, m, first, last, len(ev.Events), 0, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range ev.Events {
			extra := e.Extra
			if extra == nil {
				extra = map[string]any{}
			}
			b.Queue(`
				INSERT INTO vcenter_events (site, source, key, chain_id, type, time, username, message, severity,
				                            entity_kind, entity_id, entity_name, datacenter, extra)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
				ON CONFLICT DO NOTHING`,
				m.Site, e.Source, e.Key, e.ChainID, e.Type, time.UnixMilli(e.Time).UTC(), e.User, e.Message, e.Severity,
				e.EntityKind, e.EntityID, e.EntityName, e.Datacenter, extra)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return Result{}, fmt.Errorf("store: write events: %w", asReject(err))
	}
	return Result{Duplicate: dup, Rows: len(ev.Events)}, nil
}

// RecordRejected stores the loss of a batch the aggregator refused for good
// (malformed, forbidden, refused by the database) as a gap record, so it is
// as queryable as data the agent dropped itself.
func (s *Store) RecordRejected(ctx context.Context, m BatchMeta, first, last int64, code protocol.ErrorCode, reason string) error {
	var f, l *time.Time
	if first > 0 {
		t := time.UnixMilli(first).UTC()
		f = &t
	}
	if last > 0 {
		t := time.UnixMilli(last).UTC()
		l = &t
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO ingest_gaps (agent_id, site, epoch, from_seq, to_seq, batches, bytes, first_ts, last_ts, reason, detected_at)
		VALUES ($1, $2, $3, $4, $4, 1, $5, $6, $7, $8, now())
		ON CONFLICT DO NOTHING`,
		m.AgentID, m.Site, int64(m.Epoch), int64(m.Seq), m.Bytes, f, l, fmt.Sprintf("rejected (%s): %s", code, reason))
	if err != nil {
		return fmt.Errorf("store: record rejected batch %d/%d: %w", m.Epoch, m.Seq, err)
	}
	return nil
}
