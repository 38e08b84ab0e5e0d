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

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
)

// load restores a verified dump in one transaction on its own connection:
//
//  1. lock the target tables (EXCLUSIVE: readers go on, writers wait) and
//     make the staging tables: a temporary copy of each sync and merge
//     table; the raw partitions of the range are created if retention
//     dropped them and emptied; the rollup rows of the range deleted;
//  2. stream `pg_restore --data-only` of the file — fed through a hash of
//     its bytes — and COPY each table's data where it goes;
//  3. apply: sync tables lose the rows the dump does not have (children
//     first) and get the dump's rows inserted or updated (parents first);
//     merge tables get the rows they miss; sequences are moved past the
//     restored ids;
//  4. commit only if the bytes pg_restore read still hash to the backup's
//     SHA-256, so a file changed since the check restores nothing.
func (s *Service) load(ctx context.Context, tool string, b Backup, man Manifest, progress func(int64)) ([]audit.Record, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("restore: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("restore: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '60s'`); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	plan, err := s.prepare(ctx, tx, man)
	if err != nil {
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
	streamErr := plan.stream(ctx, tx, bufio.NewReaderSize(out, 1<<20))
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
	if err := plan.apply(ctx, tx); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("restore: commit: %w", err)
	}
	if man.Timescale && man.From != nil {
		// The continuous aggregates are rebuilt for the restored range.
		for _, v := range []string{"samples_5m", "samples_1h", "samples_1d"} {
			if _, err := s.pool.Exec(ctx, `CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)`, v, *man.From, *man.To); err != nil {
				s.log.Warn("restore: refresh continuous aggregate", "view", v, "err", err)
			}
		}
	}
	return plan.reappend, nil
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
}

type planTable struct {
	Table
	copyTo  string   // the table COPY writes
	cols    []string // the target's columns
	notNull []string // its NOT NULL columns outside the primary key
	pk      []string
	ident   []string // identity or serial columns
	copied  bool
}

// prepare locks the targets, makes the staging tables and clears what a
// partition or range replaces.
func (s *Service) prepare(ctx context.Context, tx pgx.Tx, man Manifest) (*loadPlan, error) {
	p := &loadPlan{by: map[string]*planTable{}}
	var lockList []string
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
		case ModeSync, ModeMerge, ModeChain, ModeAppend:
			pt.copyTo = fmt.Sprintf("pg_temp.vmp_restore_%d", i)
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+pt.copyTo[len("pg_temp."):]+` (LIKE `+t.Target+` INCLUDING DEFAULTS) ON COMMIT DROP`); err != nil {
				return nil, fmt.Errorf("restore: stage %s: %w", t.Target, err)
			}
			lockList = append(lockList, t.Target)
		case ModeRange:
			lockList = append(lockList, t.Target)
		case ModePartition:
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
	if len(lockList) > 0 {
		slices.Sort(lockList)
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(lockList, ", ")+` IN EXCLUSIVE MODE`); err != nil {
			return nil, fmt.Errorf("restore: lock tables: %w", err)
		}
	}
	for _, pt := range p.all {
		switch pt.Mode {
		case ModePartition:
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.samples.partitions'))`); err != nil {
				return nil, fmt.Errorf("restore: %w", err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF public.samples FOR VALUES FROM ('%s') TO ('%s')`,
				pt.Target, pt.From.UTC().Format(time.RFC3339), pt.To.UTC().Format(time.RFC3339))); err != nil {
				return nil, fmt.Errorf("restore: partition %s: %w", pt.Target, err)
			}
			if _, err := tx.Exec(ctx, `TRUNCATE `+pt.Target); err != nil {
				return nil, fmt.Errorf("restore: empty %s: %w", pt.Target, err)
			}
		case ModeRange:
			if _, err := tx.Exec(ctx, `DELETE FROM `+pt.Target+` WHERE ts >= $1 AND ts < $2`, *pt.From, *pt.To); err != nil {
				return nil, fmt.Errorf("restore: clear range of %s: %w", pt.Target, err)
			}
		}
	}
	if err := p.orderSync(ctx, tx); err != nil {
		return nil, err
	}
	return p, nil
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
