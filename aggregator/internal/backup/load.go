package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// A restore loads a verified dump in one transaction on its own
// connection, in two steps, so that ingest is paused only for the second:
//
// stageRestore, before maintenance mode, while every replica still
// ingests: make the staging tables — a temporary copy of each sync, merge
// and range table, and for each raw partition a new table with the
// partition's columns, not yet attached — then stream `pg_restore
// --data-only` of the file, fed through a hash of its bytes, COPYing each
// table's data into its staging table, check that the bytes pg_restore
// read hash to the backup's SHA-256, and build each staged partition's
// primary key and a CHECK constraint of its bounds. Then, still before
// the pause, replace the rollup rows of the range (samples_5m, _1h, _1d on
// plain PostgreSQL): only the rollup job, rollup retention and the packer
// write them, all under the rollups' advisory lock, which the restore
// takes (store.LockRollups) and keeps to its commit; so ingest goes on,
// readers keep seeing the old rows (the transaction is not committed),
// and the rollups of newly ingested data wait for the restore, then
// catch up (the job recomputes every bucket touched since its watermark).
// No other live table is locked beyond ACCESS SHARE of the tables copied
// with LIKE (the raw partitions' columns are read from the catalog, so
// that the samples table is not held at all).
//
// commitRestore, in maintenance mode: lock the other target tables
// (EXCLUSIVE: readers go on, writers wait); swap each staged partition in
// (detach and drop the day's partition, rename the staged table, attach
// it: its CHECK constraint spares PostgreSQL the validation scan, and its
// index becomes the partition's primary key); replace the other ranges
// (TimescaleDB's raw samples, which ingest writes); apply the
// configuration (sync tables lose the rows the dump does not
// have, children first, and get the dump's rows inserted or updated,
// parents first; merge tables get the rows they miss; sequences are moved
// past the restored ids); commit.
//
// Nothing is visible before the commit, and a crash at any point rolls the
// whole restore back, staged partitions included.
type pendingLoad struct {
	conn *pgx.Conn
	tx   pgx.Tx
	plan *loadPlan
	man  Manifest
}

// close ends the load's transaction (a rollback unless committed) and its
// connection.
func (pl *pendingLoad) close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	_ = pl.tx.Rollback(ctx)
	_ = pl.conn.Close(ctx)
}

// stageRestore is the first step of a restore (see pendingLoad).
func (s *Service) stageRestore(ctx context.Context, tool string, b Backup, man Manifest, progress func(int64)) (_ *pendingLoad, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("restore: connect: %w", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("restore: begin: %w", err)
	}
	pl := &pendingLoad{conn: conn, tx: tx, man: man}
	defer func() {
		if err != nil {
			pl.close(ctx)
		}
	}()
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '60s'`); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if pl.plan, err = s.prepare(ctx, tx, man, b.ID); err != nil {
		return nil, err
	}

	f, err := os.Open(s.Path(b))
	if err != nil {
		return nil, fmt.Errorf("restore: open %s: %w", b.File, err)
	}
	defer f.Close()
	hr := &hashingReader{r: f, h: sha256.New(), report: progress}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, tool, "--data-only", "--file=-")
	cmd.Stdin = hr
	stderr := &limitedBuffer{n: 4096}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("restore: pg_restore: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, newErr(CodeToolMissing, "run %s: %v", tool, err)
	}
	streamErr := pl.plan.stream(ctx, tx, bufio.NewReaderSize(out, 1<<20))
	if streamErr != nil {
		cancel()
		_, _ = io.Copy(io.Discard, out)
	}
	waitErr := cmd.Wait()
	if streamErr != nil {
		return nil, streamErr
	}
	if waitErr != nil {
		return nil, fmt.Errorf("restore: pg_restore: %v: %s", waitErr, stderr.String())
	}
	// pg_restore may stop short of the end of the file: hash the rest.
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return nil, fmt.Errorf("restore: read %s: %w", b.File, err)
	}
	if sum := hex.EncodeToString(hr.h.Sum(nil)); sum != b.SHA256 || hr.n.Load() != b.SizeBytes {
		return nil, newErr(CodeChecksum, "%s changed while it was restored (SHA-256 now %s); rolled back", b.File, sum)
	}
	if err := pl.plan.indexStaged(ctx, tx); err != nil {
		return nil, err
	}
	if err := pl.plan.replaceRollups(ctx, tx); err != nil {
		return nil, err
	}
	return pl, nil
}

// commitRestore is the second step of a restore (see pendingLoad); it
// closes pl.
func (s *Service) commitRestore(ctx context.Context, pl *pendingLoad) ([]audit.Record, error) {
	defer pl.close(ctx)
	tx, man := pl.tx, pl.man
	t0 := time.Now()
	if err := pl.plan.replace(ctx, tx); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := pl.plan.apply(ctx, tx); err != nil {
		return nil, err
	}
	t2 := time.Now()
	if man.From != nil && man.To != nil {
		// The hourly tier's packed read copy is not in the dump: forget it
		// over the restored range so queries read the restored hours.
		if err := store.ForgetPackedRange(ctx, tx, *man.From, *man.To); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	t3 := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("restore: commit: %w", err)
	}
	s.log.Info("restore swapped in", "swap", t1.Sub(t0), "configuration", t2.Sub(t1), "packed_copy", t3.Sub(t2), "commit", time.Since(t3))
	if man.Timescale && man.From != nil {
		// The continuous aggregates are rebuilt for the restored range.
		for _, v := range []string{"samples_5m", "samples_1h", "samples_1d"} {
			if _, err := s.pool.Exec(ctx, `CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)`, v, *man.From, *man.To); err != nil {
				s.log.Warn("restore: refresh continuous aggregate", "view", v, "err", err)
			}
		}
	}
	return pl.plan.reappend, nil
}

// loadPlan is where each dumped table's COPY goes and what follows it.
type loadPlan struct {
	by map[string]*planTable // by dumped name
	// sync tables in foreign-key order, parents first.
	sync    []*planTable
	merge   []*planTable
	chain   []*planTable
	appendT []*planTable
	all     []*planTable
	// reappend are the operation log's records the dump lacks, to be
	// appended again once the restore is committed (ModeChain).
	reappend []audit.Record
	// lock lists the tables commitRestore locks.
	lock []string
}

type planTable struct {
	Table
	copyTo  string   // the table COPY writes
	cols    []string // the target's columns
	notNull []string // its NOT NULL columns outside the primary key
	pk      []string
	ident   []string // identity or serial columns
	copied  bool
	// staged is, for a raw partition, the new table holding the dump's
	// rows until it replaces the partition (public.<name>).
	staged string
}

// prepare makes the staging tables (see pendingLoad) and plans the rest;
// it locks nothing but what LIKE reads.
func (s *Service) prepare(ctx context.Context, tx pgx.Tx, man Manifest, id uuid.UUID) (*loadPlan, error) {
	p := &loadPlan{by: map[string]*planTable{}}
	short := strings.ReplaceAll(id.String(), "-", "")[:12]
	for i, t := range man.Tables {
		pt := &planTable{Table: t, copyTo: t.Target}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.Target).Scan(&exists); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		if !exists && t.Mode != ModePartition {
			if t.Mode == ModeSync && !strings.HasPrefix(t.Target, "public.samples") {
				// A table this schema dropped: its data has nowhere to go.
				return nil, newErr(CodeRestoreFailed, "the dump has table %s, which this schema no longer has", t.Target)
			}
			return nil, newErr(CodeRestoreFailed, "table %s does not exist", t.Target)
		}
		switch t.Mode {
		case ModeSync, ModeMerge, ModeChain, ModeAppend, ModeRange:
			pt.copyTo = fmt.Sprintf("pg_temp.vmp_restore_%d", i)
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+pt.copyTo[len("pg_temp."):]+` (LIKE `+t.Target+` INCLUDING DEFAULTS) ON COMMIT DROP`); err != nil {
				return nil, fmt.Errorf("restore: stage %s: %w", t.Target, err)
			}
			if !pt.rollup() {
				p.lock = append(p.lock, t.Target)
			}
		case ModePartition:
			// The partition's columns from the catalog: no lock on samples.
			var cols string
			if err := tx.QueryRow(ctx, `
				SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END,
				                  ', ' ORDER BY attnum)
				FROM pg_attribute WHERE attrelid = 'public.samples'::regclass AND attnum > 0 AND NOT attisdropped`).Scan(&cols); err != nil {
				return nil, fmt.Errorf("restore: columns of public.samples: %w", err)
			}
			pt.staged = fmt.Sprintf("vmp_restore_%s_%d", short, i)
			pt.copyTo = "public." + pt.staged
			if _, err := tx.Exec(ctx, `CREATE TABLE `+pt.copyTo+` (`+cols+`)`); err != nil {
				return nil, fmt.Errorf("restore: stage %s: %w", t.Target, err)
			}
		default:
			return nil, newErr(CodeRestoreFailed, "table %s: unknown restore mode %q", t.Name, t.Mode)
		}
		if exists {
			var err error
			if pt.cols, pt.pk, pt.ident, pt.notNull, err = columns(ctx, tx, t.Target); err != nil {
				return nil, err
			}
			if t.Mode != ModeSync && t.Mode != ModeChain && t.Mode != ModeAppend && t.Mode != ModeMerge {
				pt.ident = nil // partitions and ranges: the rows keep the ids they had
			}
			if (t.Mode == ModeSync || t.Mode == ModeChain || t.Mode == ModeAppend) && len(pt.pk) == 0 {
				return nil, newErr(CodeRestoreFailed, "table %s has no primary key to restore by", t.Target)
			}
		}
		if t.Mode == ModeRange && len(pt.cols) == 0 {
			return nil, newErr(CodeRestoreFailed, "table %s has no columns", t.Target)
		}
		p.by[stripQuotes(t.Name)] = pt
		p.all = append(p.all, pt)
		switch t.Mode {
		case ModeSync:
			p.sync = append(p.sync, pt)
		case ModeMerge:
			p.merge = append(p.merge, pt)
		case ModeChain:
			p.chain = append(p.chain, pt)
		case ModeAppend:
			p.appendT = append(p.appendT, pt)
		}
	}
	if err := p.orderSync(ctx, tx); err != nil {
		return nil, err
	}
	return p, nil
}

// indexStaged builds each staged partition's primary key (one sort, not
// row by row) and the CHECK constraint of its bounds, so that attaching it
// needs neither an index build nor a validation scan.
func (p *loadPlan) indexStaged(ctx context.Context, tx pgx.Tx) error {
	for _, pt := range p.all {
		if pt.Mode != ModePartition {
			continue
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+pt.copyTo+` ADD CONSTRAINT `+pt.staged+`_pkey PRIMARY KEY (series_id, ts)`); err != nil {
			return fmt.Errorf("restore: index staged %s: %w", pt.Target, err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT vmp_restore_bounds CHECK (ts IS NOT NULL AND ts >= '%s' AND ts < '%s')`,
			pt.copyTo, pt.From.UTC().Format(time.RFC3339), pt.To.UTC().Format(time.RFC3339))); err != nil {
			return fmt.Errorf("restore: bound staged %s: %w", pt.Target, err)
		}
	}
	return nil
}

// replace locks the targets, swaps the staged partitions in and replaces
// the ranges that are not rollups.
func (p *loadPlan) replace(ctx context.Context, tx pgx.Tx) error {
	if len(p.lock) > 0 {
		lock := slices.Clone(p.lock)
		slices.Sort(lock)
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(lock, ", ")+` IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("restore: lock tables: %w", err)
		}
	}
	for _, pt := range p.all {
		switch pt.Mode {
		case ModePartition:
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.samples.partitions'))`); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			bare := strings.TrimPrefix(pt.Target, "public.")
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pt.Target).Scan(&exists); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			steps := []string{}
			if exists {
				steps = append(steps, `ALTER TABLE public.samples DETACH PARTITION `+pt.Target, `DROP TABLE `+pt.Target)
			}
			steps = append(steps,
				`ALTER TABLE `+pt.copyTo+` RENAME TO `+pgx.Identifier{bare}.Sanitize(),
				`ALTER INDEX public.`+pt.staged+`_pkey RENAME TO `+pgx.Identifier{bare + "_pkey"}.Sanitize(),
				fmt.Sprintf(`ALTER TABLE public.samples ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`,
					pt.Target, pt.From.UTC().Format(time.RFC3339), pt.To.UTC().Format(time.RFC3339)),
				`ALTER TABLE `+pt.Target+` DROP CONSTRAINT vmp_restore_bounds`)
			for _, sql := range steps {
				if _, err := tx.Exec(ctx, sql); err != nil {
					return fmt.Errorf("restore: partition %s: %w", pt.Target, err)
				}
			}
		case ModeRange:
			if pt.rollup() {
				continue // replaced before the pause (replaceRollups)
			}
			if err := pt.replaceRange(ctx, tx); err != nil {
				return err
			}
		}
	}
	return nil
}

// rollupTables are the rollup tiers of plain PostgreSQL, which only the
// jobs holding the rollups' advisory lock write.
var rollupTables = []string{"public.samples_5m", "public.samples_1h", "public.samples_1d"}

// rollup reports whether pt is the range of a rollup tier.
func (pt *planTable) rollup() bool {
	return pt.Mode == ModeRange && slices.Contains(rollupTables, pt.Target)
}

// replaceRollups replaces the rollup rows of the range under the rollups'
// advisory lock, before the pause (see pendingLoad).
func (p *loadPlan) replaceRollups(ctx context.Context, tx pgx.Tx) error {
	locked := false
	for _, pt := range p.all {
		if !pt.rollup() {
			continue
		}
		if !locked {
			if err := store.LockRollups(ctx, tx); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			locked = true
		}
		if err := pt.replaceRange(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// replaceRange replaces the target's rows of [From, To) with the staged
// ones.
func (pt *planTable) replaceRange(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `DELETE FROM `+pt.Target+` WHERE ts >= $1 AND ts < $2`, *pt.From, *pt.To); err != nil {
		return fmt.Errorf("restore: clear range of %s: %w", pt.Target, err)
	}
	cols := strings.Join(pt.cols, ", ")
	if _, err := tx.Exec(ctx, `INSERT INTO `+pt.Target+` (`+cols+`) SELECT `+cols+` FROM `+pt.copyTo); err != nil {
		return fmt.Errorf("restore: range of %s: %w", pt.Target, err)
	}
	return nil
}

// columns reads a table's columns, primary key and identity/serial
// columns.
func columns(ctx context.Context, tx pgx.Tx, table string) (cols, pk, ident, notNull []string, err error) {
	rows, err := tx.Query(ctx, `
		SELECT a.attname, coalesce(a.attnum = ANY(i.indkey), false), a.attidentity <> '' OR pg_get_serial_sequence($1, a.attname) IS NOT NULL,
			a.attnotnull
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, table)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("restore: columns of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var isPK, isIdent, isNotNull bool
		if err := rows.Scan(&name, &isPK, &isIdent, &isNotNull); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("restore: columns of %s: %w", table, err)
		}
		q := pgx.Identifier{name}.Sanitize()
		cols = append(cols, q)
		if isPK {
			pk = append(pk, q)
		} else if isNotNull {
			notNull = append(notNull, q)
		}
		if isIdent {
			ident = append(ident, name)
		}
	}
	return cols, pk, ident, notNull, rows.Err()
}

// orderSync sorts the sync tables parents first by their foreign keys.
func (p *loadPlan) orderSync(ctx context.Context, tx pgx.Tx) error {
	if len(p.sync) < 2 {
		return nil
	}
	names := make([]string, len(p.sync))
	for i, t := range p.sync {
		names[i] = t.Target
	}
	rows, err := tx.Query(ctx, `SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
		WHERE contype = 'f' AND conrelid = ANY($1::regclass[]) AND confrelid = ANY($1::regclass[]) AND conrelid <> confrelid`, names)
	if err != nil {
		return fmt.Errorf("restore: foreign keys: %w", err)
	}
	parents := map[string][]string{} // child → parents, unqualified names as regclass::text prints them
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			rows.Close()
			return fmt.Errorf("restore: foreign keys: %w", err)
		}
		parents[child] = append(parents[child], parent)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("restore: foreign keys: %w", err)
	}
	short := func(t *planTable) string { return strings.TrimPrefix(t.Target, "public.") }
	var out []*planTable
	done := map[string]bool{}
	for len(out) < len(p.sync) {
		progressed := false
		for _, t := range p.sync {
			if done[short(t)] {
				continue
			}
			ready := true
			for _, par := range parents[short(t)] {
				if !done[strings.TrimPrefix(par, "public.")] {
					ready = false
				}
			}
			if ready {
				out = append(out, t)
				done[short(t)] = true
				progressed = true
			}
		}
		if !progressed {
			return newErr(CodeRestoreFailed, "the backup's tables reference each other in a cycle")
		}
	}
	p.sync = out
	return nil
}

// stream reads pg_restore's SQL and runs each table's COPY into its
// destination; everything else pg_restore writes (SET, comments) is
// skipped: the session is this connection's, set up by us.
func (p *loadPlan) stream(ctx context.Context, tx pgx.Tx, r *bufio.Reader) error {
	for {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			if strings.TrimSpace(line) != "" {
				return newErr(CodeRestoreFailed, "pg_restore output ends mid-statement")
			}
			break
		}
		if err != nil {
			return fmt.Errorf("restore: read pg_restore output: %w", err)
		}
		if !strings.HasPrefix(line, "COPY ") {
			continue
		}
		name, cols, ok := parseCopy(strings.TrimRight(line, "\n"))
		if !ok {
			return newErr(CodeRestoreFailed, "unexpected COPY statement %.200q", line)
		}
		block := &copyBlock{br: r, atLineStart: true}
		pt := p.by[name]
		if strings.HasSuffix(name, ".manifest") && pt == nil {
			if _, err := io.Copy(io.Discard, block); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			continue
		}
		if pt == nil {
			return newErr(CodeRestoreFailed, "the dump has data for %s, which its manifest does not list", name)
		}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, block, `COPY `+pt.copyTo+` (`+cols+`) FROM STDIN`); err != nil {
			return fmt.Errorf("restore: copy %s: %w", pt.Target, err)
		}
		if !block.done {
			return newErr(CodeRestoreFailed, "the data of %s ends early", name)
		}
		pt.copied = true
	}
	for _, pt := range p.all {
		if !pt.copied {
			return newErr(CodeRestoreFailed, "the dump has no data for %s", pt.Name)
		}
	}
	return nil
}

// apply turns the staged rows into the tables' contents.
func (p *loadPlan) apply(ctx context.Context, tx pgx.Tx) error {
	sync := p.sync
	if extra, err := p.applyChain(ctx, tx); err != nil {
		return err
	} else if len(extra) > 0 {
		sync = append(slices.Clone(sync), extra...) // no foreign keys between them and the rest
	}
	for i := len(sync) - 1; i >= 0; i-- { // children first
		t := sync[i]
		if _, err := tx.Exec(ctx, `DELETE FROM `+t.Target+` t WHERE NOT EXISTS (SELECT 1 FROM `+t.copyTo+` s WHERE `+equal("s", "t", t.pk)+`)`); err != nil {
			return fmt.Errorf("restore: %s: remove rows the backup does not have: %w", t.Target, err)
		}
	}
	for _, t := range sync { // parents first
		cols := strings.Join(t.cols, ", ")
		rest := t.nonPK()
		conflict := `DO NOTHING`
		if len(rest) > 0 {
			conflict = `DO UPDATE SET (` + strings.Join(rest, ", ") + `) = ROW(` + prefixed("EXCLUDED.", rest) + `)
				WHERE (` + prefixed("t.", rest) + `) IS DISTINCT FROM (` + prefixed("EXCLUDED.", rest) + `)`
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+t.Target+` AS t (`+cols+`) OVERRIDING SYSTEM VALUE SELECT `+cols+` FROM `+t.copyTo+`
			ON CONFLICT (`+strings.Join(t.pk, ", ")+`) `+conflict); err != nil {
			return fmt.Errorf("restore: %s: write the backup's rows: %w", t.Target, err)
		}
	}
	for _, t := range p.merge {
		cols := strings.Join(t.cols, ", ")
		if _, err := tx.Exec(ctx, `INSERT INTO `+t.Target+` (`+cols+`) OVERRIDING SYSTEM VALUE SELECT `+cols+` FROM `+t.copyTo+` ON CONFLICT DO NOTHING`); err != nil {
			return fmt.Errorf("restore: %s: add the backup's rows: %w", t.Target, err)
		}
	}
	for _, t := range p.appendT {
		// A row is there when a row with the same content (its NOT NULL
		// columns, which hash-join) is; the missing ones keep their id
		// when it is free, else take a new one.
		same := `NOT EXISTS (SELECT 1 FROM ` + t.Target + ` x WHERE ` + equal("x", "s", t.notNull) + `)`
		cols, rest := strings.Join(t.cols, ", "), t.nonPK()
		if _, err := tx.Exec(ctx, `INSERT INTO `+t.Target+` (`+cols+`) OVERRIDING SYSTEM VALUE SELECT `+prefixed("s.", t.cols)+` FROM `+t.copyTo+` s
			WHERE NOT EXISTS (SELECT 1 FROM `+t.Target+` x WHERE `+equal("x", "s", t.pk)+`) AND `+same); err != nil {
			return fmt.Errorf("restore: %s: add the backup's rows: %w", t.Target, err)
		}
		if err := t.advanceSequences(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+t.Target+` (`+strings.Join(rest, ", ")+`) SELECT `+prefixed("s.", rest)+` FROM `+t.copyTo+` s WHERE `+same); err != nil {
			return fmt.Errorf("restore: %s: add the backup's rows: %w", t.Target, err)
		}
	}
	for _, t := range p.all {
		if err := t.advanceSequences(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// advanceSequences moves the table's identity and serial sequences past
// its largest ids, so that new rows do not collide with restored ones.
func (t *planTable) advanceSequences(ctx context.Context, tx pgx.Tx) error {
	for _, c := range t.ident {
		if _, err := tx.Exec(ctx, `SELECT setval(seq::regclass, greatest(nextval(seq::regclass) - 1, (SELECT coalesce(max(`+pgx.Identifier{c}.Sanitize()+`), 1) FROM `+t.Target+`)))
			FROM pg_get_serial_sequence($1, $2) AS seq`, t.Target, c); err != nil {
			return fmt.Errorf("restore: %s: sequence of %s: %w", t.Target, c, err)
		}
	}
	return nil
}

// applyChain decides what happens to the operation log (ModeChain): when
// the database's log holds every record of the dump, nothing; else the
// log and its head are to be synced to the dump (returned), and the
// records only the database has are kept in p.reappend, to be appended
// again after the restore.
func (p *loadPlan) applyChain(ctx context.Context, tx pgx.Tx) ([]*planTable, error) {
	var logT, head *planTable
	for _, t := range p.chain {
		switch t.Target {
		case "public.audit_log":
			logT = t
		case "public.audit_chain":
			head = t
		}
	}
	if logT == nil && head == nil {
		return nil, nil
	}
	if logT == nil || head == nil || len(p.chain) != 2 {
		return nil, newErr(CodeRestoreFailed, "the dump has only part of the operation log")
	}
	var missing int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+logT.copyTo+` s WHERE NOT EXISTS (SELECT 1 FROM public.audit_log a WHERE a.seq = s.seq AND a.hash = s.hash)`).
		Scan(&missing); err != nil {
		return nil, fmt.Errorf("restore: compare the operation logs: %w", err)
	}
	if missing == 0 {
		return nil, nil // ours goes further: keep it
	}
	rows, err := tx.Query(ctx, `SELECT seq, time, source, actor_type, actor_id, actor_name, action, resource_type, resource_id, summary, result,
			status, ip, user_agent, request_id, latency_us
		FROM public.audit_log a WHERE NOT EXISTS (SELECT 1 FROM `+logT.copyTo+` s WHERE s.seq = a.seq AND s.hash = a.hash) ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("restore: read the operation log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r audit.Record
		var summary string
		if err := rows.Scan(&r.Seq, &r.Time, &r.Source, &r.ActorType, &r.ActorID, &r.ActorName, &r.Action, &r.ResourceType, &r.ResourceID,
			&summary, &r.Result, &r.Status, &r.IP, &r.UserAgent, &r.RequestID, &r.LatencyUS); err != nil {
			return nil, fmt.Errorf("restore: read the operation log: %w", err)
		}
		doc := map[string]any{}
		if summary != "" && json.Unmarshal([]byte(summary), &doc) != nil {
			doc = map[string]any{"original": summary}
		}
		doc["reappended_after_restore"] = map[string]any{"original_seq": r.Seq}
		r.Summary, _ = json.Marshal(doc)
		r.Seq = 0
		p.reappend = append(p.reappend, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("restore: read the operation log: %w", err)
	}
	return []*planTable{head, logT}, nil
}

// nonPK is the table's columns outside its primary key.
func (t *planTable) nonPK() []string {
	var out []string
	for _, c := range t.cols {
		if !slices.Contains(t.pk, c) {
			out = append(out, c)
		}
	}
	return out
}

// equal is "a.c1 = b.c1 AND …" over cols.
func equal(a, b string, cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = a + "." + c + " = " + b + "." + c
	}
	return strings.Join(parts, " AND ")
}

// prefixed is "p.c1, p.c2, …".
func prefixed(p string, cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = p + c
	}
	return strings.Join(parts, ", ")
}

// parseCopy splits `COPY schema.table (a, b) FROM stdin;`.
func parseCopy(line string) (name, cols string, ok bool) {
	rest, ok := strings.CutPrefix(line, "COPY ")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, ") FROM stdin;")
	if !ok {
		return "", "", false
	}
	name, cols, ok = strings.Cut(rest, " (")
	return stripQuotes(name), cols, ok
}

func stripQuotes(s string) string { return strings.ReplaceAll(s, `"`, "") }

// copyBlock reads one COPY data block of pg_restore's output, up to (not
// including) its terminating `\.` line.
type copyBlock struct {
	br          *bufio.Reader
	pending     []byte
	atLineStart bool
	done        bool
}

func (c *copyBlock) Read(p []byte) (int, error) {
	// Fill p with as many lines as fit: pgx sends one CopyData message per
	// Read, and one per row is several times slower.
	n := 0
	for n < len(p) {
		if len(c.pending) == 0 {
			if c.done {
				break
			}
			line, err := c.br.ReadSlice('\n')
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				c.pending, c.atLineStart = line, false
			case err != nil:
				return n, fmt.Errorf("restore: COPY data ends without its terminator: %w", err)
			default:
				if c.atLineStart && string(line) == "\\.\n" {
					c.done = true
					continue
				}
				c.pending, c.atLineStart = line, true
			}
		}
		// pending points into the reader's buffer: it is copied out
		// before the next ReadSlice.
		k := copy(p[n:], c.pending)
		c.pending = c.pending[k:]
		n += k
	}
	if n == 0 && c.done {
		return 0, io.EOF
	}
	return n, nil
}
