package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// DispatcherConfig configures a Dispatcher. Zero values take the defaults
// noted.
type DispatcherConfig struct {
	// Name identifies this dispatcher in the lease (host name, replica).
	Name string
	// PollInterval bounds the wait for work when no NOTIFY arrives
	// (default 1s); it is also how often a waiting replica tries the lease.
	PollInterval time.Duration
	// Batch is how many notifications one claim takes (default 64), and
	// Workers how many are delivered at once (default 8).
	Batch, Workers int
	// MaxAttempts: a notification still failing after this many attempts
	// is given up as failed (default 12).
	MaxAttempts int
	// BackoffMin and BackoffMax bound the delay between attempts (default
	// 2s doubling to 10m); a provider's retry-after wins when longer.
	BackoffMin, BackoffMax time.Duration
	// CallTimeout bounds one Notify (default 30s).
	CallTimeout time.Duration
	// DigestDelay: late transitions of a site go out as one digest per
	// channel once none has come for this long (default 30s).
	DigestDelay time.Duration
	// HousekeepingInterval is how often repeats and digests are checked
	// (default 10s).
	HousekeepingInterval time.Duration
	// ConsoleURL links notifications to the console.
	ConsoleURL string
	Logger     *slog.Logger
}

func (c *DispatcherConfig) setDefaults() {
	c.Name = cmp.Or(c.Name, "aggregator")
	c.PollInterval = cmp.Or(c.PollInterval, time.Second)
	c.Batch = cmp.Or(c.Batch, 64)
	c.Workers = cmp.Or(c.Workers, 8)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 12)
	c.BackoffMin = cmp.Or(c.BackoffMin, 2*time.Second)
	c.BackoffMax = cmp.Or(c.BackoffMax, 10*time.Minute)
	c.CallTimeout = cmp.Or(c.CallTimeout, 30*time.Second)
	c.DigestDelay = cmp.Or(c.DigestDelay, 30*time.Second)
	c.HousekeepingInterval = cmp.Or(c.HousekeepingInterval, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// DispatcherStats count a dispatcher's work since start.
type DispatcherStats struct {
	Leases, Delivered, Retried, Failed, Fenced, Attempts atomic.Int64
	// Merged counts the notifications merged into storm digests, Digests
	// those digests.
	Merged, Digests atomic.Int64
	// Grouped counts the notifications merged into group messages.
	Grouped atomic.Int64
}

// Dispatcher drains the outbox while it holds the lease. Any number of
// dispatchers may run on one database (one per replica): one at a time
// delivers.
type Dispatcher struct {
	pool  *pgxpool.Pool
	db    *DB
	n     Notifier
	cfg   DispatcherConfig
	log   *slog.Logger
	Stats DispatcherStats

	epoch atomic.Int64 // the lease epoch held, 0 when none
	lim   *limiter     // the send logs of the rate-limited channels (leading)
	due   time.Time    // the cutoff of the current delivery round
}

// NewDispatcher returns a dispatcher over the database behind pool that
// delivers through n.
func NewDispatcher(pool *pgxpool.Pool, n Notifier, cfg DispatcherConfig) *Dispatcher {
	cfg.setDefaults()
	return &Dispatcher{pool: pool, db: NewDB(pool), n: n, cfg: cfg, log: cfg.Logger}
}

// dispatchLock is the advisory lock key of the lease.
const dispatchLock = "vmpulse.alert.dispatcher"

// Epoch returns the lease epoch this dispatcher holds, 0 when none.
func (d *Dispatcher) Epoch() int64 { return d.epoch.Load() }

// Run competes for the lease until ctx ends, and drains the outbox while
// it holds it. On return it has finished the deliveries it started and
// released the lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := d.session(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("alert dispatcher: lease session ended", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(d.cfg.PollInterval):
		}
	}
	return nil
}

// session opens a dedicated connection, takes the lease if free, and
// leads until it loses it or ctx ends.
func (d *Dispatcher) session(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("alert dispatcher: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx) // ends the session: the lock goes with it
	}()
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, dispatchLock).Scan(&ok); err != nil {
			return fmt.Errorf("alert dispatcher: lock: %w", err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.cfg.PollInterval):
		}
	}
	var epoch int64
	if err := conn.QueryRow(ctx, `UPDATE alert_dispatch_lease SET epoch = epoch + 1, holder = $1, acquired_at = now() WHERE id = 1 RETURNING epoch`,
		d.cfg.Name).Scan(&epoch); err != nil {
		return fmt.Errorf("alert dispatcher: take lease: %w", err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+outboxChannel); err != nil {
		return fmt.Errorf("alert dispatcher: listen: %w", err)
	}
	if err := d.seedLimits(ctx); err != nil {
		return err
	}
	// Notifications held for a missing or refused plugin are due at once
	// for a new lease holder: plugins are found when an aggregator starts,
	// so one that starts with the plugin fixed sends them now rather than
	// at the end of their hold.
	if tag, err := conn.Exec(ctx, `UPDATE alert_notifications SET next_attempt_at = now()
		WHERE state = 'pending' AND last_code = $1 AND next_attempt_at > now()`, heldCode); err != nil {
		return fmt.Errorf("alert dispatcher: release held notifications: %w", err)
	} else if n := tag.RowsAffected(); n > 0 {
		d.log.Info("alert dispatcher: notifications held for a missing plugin are due again", "notifications", n)
	}
	d.epoch.Store(epoch)
	defer d.epoch.Store(0)
	d.Stats.Leases.Add(1)
	d.log.Info("alert dispatcher: lease taken", "epoch", epoch, "holder", d.cfg.Name)
	return d.lead(ctx, conn, epoch)
}

// lead delivers while the lease is ours.
func (d *Dispatcher) lead(ctx context.Context, conn *pgx.Conn, epoch int64) error {
	var housekept time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		var cur int64
		if err := conn.QueryRow(ctx, `SELECT epoch FROM alert_dispatch_lease WHERE id = 1`).Scan(&cur); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("alert dispatcher: check lease: %w", err)
		}
		if cur != epoch {
			return fmt.Errorf("alert dispatcher: lease epoch %d passed to %d", epoch, cur)
		}
		if time.Since(housekept) >= d.cfg.HousekeepingInterval {
			if err := d.Housekeep(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("alert dispatcher: housekeeping", "err", err)
			}
			housekept = time.Now()
		}
		n, err := d.deliverDue(ctx, epoch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.log.Error("alert dispatcher: deliver", "err", err)
		}
		if n > 0 {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, d.cfg.PollInterval)
		// pgx.Conn's wait returns a NOTIFY that arrived during the
		// queries above at once; the PgConn's would wait for another.
		_, err = conn.WaitForNotification(wctx)
		cancel()
		if err != nil && !pgconn.Timeout(err) && ctx.Err() == nil {
			return fmt.Errorf("alert dispatcher: wait: %w", err)
		}
	}
}

// claimed is one notification taken for delivery.
type claimed struct {
	id        int64
	key       string
	channel   uuid.UUID
	kind      string
	payload   notePayload
	attempt   int
	createdAt time.Time
}

// deliverDue claims due notifications under epoch and delivers them; it
// returns how many it claimed. Deliveries started finish even when ctx
// ends (within CallTimeout), so a planned handover sends nothing twice.
func (d *Dispatcher) deliverDue(ctx context.Context, epoch int64) (int, error) {
	if d.lim == nil {
		d.lim = &limiter{}
	}
	// One cutoff for the whole round: what becomes due while it runs is
	// left to the next, so a group is merged before any of it is claimed.
	if err := d.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&d.due); err != nil {
		return 0, fmt.Errorf("alert dispatcher: clock: %w", err)
	}
	if err := d.mergeGroups(ctx, epoch); err != nil {
		return 0, err
	}
	rates, err := d.limitedChannels(ctx)
	if err != nil {
		return 0, err
	}
	limited := make([]uuid.UUID, 0, len(rates))
	for id := range rates {
		limited = append(limited, id)
	}
	list, err := d.claim(ctx, epoch, `n.channel_id <> ALL($3::uuid[])`, limited, d.cfg.Batch)
	if err != nil {
		return 0, err
	}
	if len(rates) > 0 {
		quota, err := d.limitedClaims(ctx, epoch, rates)
		if err != nil {
			return 0, err
		}
		for ch, n := range quota {
			if n < 0 || n > d.cfg.Batch {
				n = d.cfg.Batch
			}
			more, err := d.claim(ctx, epoch, `n.channel_id = $3`, ch, n)
			if err != nil {
				return 0, err
			}
			now := time.Now()
			for range more {
				d.lim.log(ch).add(now)
			}
			list = append(list, more...)
		}
	}
	if len(list) == 0 {
		return 0, nil
	}
	return d.deliverClaimed(ctx, epoch, list), nil
}

// claim takes up to limit due notifications matching cond (on alias n,
// with arg as $3) under epoch.
func (d *Dispatcher) claim(ctx context.Context, epoch int64, cond string, arg any, limit int) ([]claimed, error) {
	rows, err := d.pool.Query(ctx, `
		WITH lease AS (SELECT epoch FROM alert_dispatch_lease WHERE id = 1 AND epoch = $1 FOR SHARE),
		c AS (
			SELECT n.id FROM alert_notifications n
			WHERE EXISTS (SELECT 1 FROM lease) AND `+cond+`
			  AND ((n.state = 'pending' AND n.next_attempt_at <= $4) OR (n.state = 'sending' AND n.claimed_epoch < $1))
			ORDER BY n.next_attempt_at, n.id LIMIT $2 FOR UPDATE OF n SKIP LOCKED)
		UPDATE alert_notifications n SET state = 'sending', claimed_epoch = $1, claimed_at = now(), attempts = n.attempts + 1
		FROM c WHERE n.id = c.id
		RETURNING n.id, n.idempotency_key, n.channel_id, n.kind, n.payload, n.attempts, n.created_at`, epoch, limit, arg, d.due)
	if err != nil {
		return nil, fmt.Errorf("alert dispatcher: claim: %w", err)
	}
	var list []claimed
	for rows.Next() {
		var c claimed
		var p []byte
		if err := rows.Scan(&c.id, &c.key, &c.channel, &c.kind, &p, &c.attempt, &c.createdAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("alert dispatcher: claim: %w", err)
		}
		if err := json.Unmarshal(p, &c.payload); err != nil {
			d.log.Error("alert dispatcher: bad payload", "notification", c.id, "err", err)
		}
		list = append(list, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alert dispatcher: claim: %w", err)
	}
	return list, nil
}

// deliverClaimed delivers claimed notifications and records each outcome;
// it returns how many there were.
func (d *Dispatcher) deliverClaimed(ctx context.Context, epoch int64, list []claimed) int {
	// Deliveries and their records outlive ctx: a stop waits for them.
	dctx := context.WithoutCancel(ctx)
	channels := map[uuid.UUID]*Channel{}
	var chErr = map[uuid.UUID]error{}
	for _, c := range list {
		if _, ok := channels[c.channel]; ok || chErr[c.channel] != nil {
			continue
		}
		ch, err := d.db.SendConfig(dctx, c.channel)
		if err != nil {
			chErr[c.channel] = err
			continue
		}
		channels[c.channel] = &ch
	}
	sem := make(chan struct{}, d.cfg.Workers)
	var wg sync.WaitGroup
	for _, c := range list {
		sem <- struct{}{}
		wg.Add(1)
		go func(c claimed) {
			defer func() { <-sem; wg.Done() }()
			d.deliver(dctx, epoch, c, channels[c.channel], chErr[c.channel])
		}(c)
	}
	wg.Wait()
	return len(list)
}

// deliver makes one attempt and records it.
func (d *Dispatcher) deliver(ctx context.Context, epoch int64, c claimed, ch *Channel, chErr error) {
	started := time.Now()
	var res sdk.Result
	var err error
	switch {
	case chErr != nil:
		err = chErr
	case !ch.Enabled:
		res = sdk.PermanentResult("", "channel disabled")
	default:
		n := sdk.Notification{ID: c.key, Channel: ch.Name, Config: ch.Config, Locale: ch.Locale, Digest: c.payload.Digest,
			Alerts: c.payload.Alerts, Omitted: c.payload.Omitted, Attempt: c.attempt, CreatedAt: c.createdAt.UTC(), ConsoleURL: d.cfg.ConsoleURL}
		cctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
		res, err = d.n.Notify(cctx, *ch, n)
		cancel()
	}
	d.Stats.Attempts.Add(1)
	if rerr := d.record(ctx, epoch, c, started, res, err); rerr != nil {
		d.log.Error("alert dispatcher: record attempt", "notification", c.id, "err", rerr)
	}
}

// heldCode is the last_code of a notification held because no plugin
// could make its attempt.
const heldCode = "plugin_unavailable"

// backoff is the delay before attempt+1: BackoffMin doubling per attempt
// up to BackoffMax, ±20% jitter.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.cfg.BackoffMin
	for i := 1; i < attempt && b < d.cfg.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, d.cfg.BackoffMax)
	return time.Duration(float64(b) * (0.8 + 0.4*rand.Float64()))
}

// record stores the outcome of an attempt, fenced by epoch.
func (d *Dispatcher) record(ctx context.Context, epoch int64, c claimed, started time.Time, res sdk.Result, callErr error) error {
	outcome, state := "", ""
	var next time.Time
	held := 0 // 1: the attempt is not counted (no plugin to make it)
	errText := ""
	switch {
	case callErr != nil:
		outcome, errText = "error", callErr.Error()
	default:
		outcome = res.Outcome.String()
	}
	switch {
	case callErr == nil && res.Outcome == sdk.Delivered:
		state = "delivered"
	case callErr == nil && res.Outcome == sdk.Permanent:
		state = "failed"
	case errors.Is(callErr, ErrNotifierUnavailable):
		// No plugin could make the attempt (not installed, refused): the
		// notification waits for one, however long, without using up its
		// attempts, and is tried again every BackoffMax and whenever a
		// dispatcher takes the lease (heldCode marks it).
		state, held = "pending", 1
		next = time.Now().Add(d.cfg.BackoffMax)
		res.Code = heldCode
	case c.attempt >= d.cfg.MaxAttempts:
		state = "failed"
	default:
		state = "pending"
		next = time.Now().Add(max(d.backoff(c.attempt), res.RetryAfter))
	}
	if callErr == nil && res.Outcome != sdk.Delivered && res.Outcome != sdk.Retry && res.Outcome != sdk.Permanent {
		outcome, errText = "error", fmt.Sprintf("notifier returned %s", res.Outcome)
	}
	if len(errText) > 2000 {
		errText = errText[:2000]
	}
	msg := res.Message
	if len(msg) > 2000 {
		msg = msg[:2000]
	}
	fenced := false
	err := d.db.inTx(ctx, func(tx pgx.Tx) error {
		var alertID *int64
		var nextp *time.Time
		if !next.IsZero() {
			nextp = &next
		}
		err := tx.QueryRow(ctx, `
			UPDATE alert_notifications SET state = $3, next_attempt_at = coalesce($4, next_attempt_at),
				delivered_at = CASE WHEN $3 = 'delivered' THEN now() END, last_code = $5, last_error = $6,
				attempts = attempts - $7::int
			WHERE id = $1 AND claimed_epoch = $2 AND state = 'sending'
			RETURNING alert_id`, c.id, epoch, state, nextp, res.Code, cmp.Or(errText, msg), held).Scan(&alertID)
		if errors.Is(err, pgx.ErrNoRows) {
			fenced = true
		} else if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO alert_notification_attempts (notification_id, attempt, epoch, started_at, finished_at, outcome, code, message, error, fenced)
			VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8, $9)`, c.id, c.attempt, epoch, started, outcome, res.Code, msg, errText, fenced); err != nil {
			return err
		}
		if fenced || alertID == nil || (state != "delivered" && state != "failed") {
			return nil
		}
		kind := "notified"
		if state == "failed" {
			kind = "notify_failed"
		}
		_, err = tx.Exec(ctx, `INSERT INTO alert_events (alert_id, kind, at, detail) VALUES ($1, $2, now(), $3)`, *alertID, kind,
			map[string]any{"notification": c.id, "channel": c.channel.String(), "notification_kind": c.kind, "attempt": c.attempt, "code": res.Code})
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case fenced:
		d.Stats.Fenced.Add(1)
		d.log.Warn("alert dispatcher: outcome fenced (the lease moved on)", "notification", c.id, "epoch", epoch)
	case state == "delivered":
		d.Stats.Delivered.Add(1)
	case state == "failed":
		d.Stats.Failed.Add(1)
	default:
		d.Stats.Retried.Add(1)
	}
	return nil
}

// Housekeep queues the repeats of firing, unacknowledged alerts that are
// due, and the digests of late transitions that have settled. The lease
// holder runs it; it is idempotent (every row it writes has a unique key).
func (d *Dispatcher) Housekeep(ctx context.Context) error {
	if err := d.repeats(ctx); err != nil {
		return err
	}
	return d.digests(ctx)
}

func (d *Dispatcher) repeats(ctx context.Context) error {
	rows, err := d.pool.Query(ctx, `
		SELECT a.id, a.notify_seq, a.last_notified_at, r.spec->>'repeat_interval'
		FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
		WHERE a.state = 'firing' AND a.acked_at IS NULL AND NOT a.silenced AND NOT a.late AND a.last_notified_at IS NOT NULL
		  AND coalesce(r.spec->>'repeat_interval', '0s') NOT IN ('', '0', '0s')`)
	if err != nil {
		return fmt.Errorf("alert: repeats: %w", err)
	}
	type due struct {
		id  int64
		seq int
	}
	var list []due
	now := time.Now()
	for rows.Next() {
		var id int64
		var seq int
		var last time.Time
		var every string
		if err := rows.Scan(&id, &seq, &last, &every); err != nil {
			rows.Close()
			return fmt.Errorf("alert: repeats: %w", err)
		}
		iv, err := time.ParseDuration(every)
		if err != nil || iv <= 0 || now.Sub(last) < iv {
			continue
		}
		list = append(list, due{id, seq})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("alert: repeats: %w", err)
	}
	for _, x := range list {
		err := d.db.inTx(ctx, func(tx pgx.Tx) error {
			var channels []uuid.UUID
			var a sdk.Alert
			row := tx.QueryRow(ctx, `
				UPDATE alerts a SET notify_seq = notify_seq + 1, last_notified_at = now()
				FROM alert_rules r WHERE a.id = $1 AND a.notify_seq = $2 AND r.id = a.rule_id AND a.state = 'firing' AND a.acked_at IS NULL
				RETURNING `+alertPayloadCols+`, coalesce(ARRAY(SELECT jsonb_array_elements_text(r.spec->'channels'))::uuid[], '{}')`, x.id, x.seq)
			if err := scanAlertPayload(row, &a, &channels); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				return err
			}
			n, err := d.db.enqueue(ctx, tx, channels, x.id, "repeat", "repeat-"+strconv.Itoa(x.seq+1), a)
			if err != nil || n == 0 {
				return err
			}
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, outboxChannel)
			return err
		})
		if err != nil {
			return fmt.Errorf("alert: repeat of %d: %w", x.id, err)
		}
	}
	return nil
}

// alertPayloadCols and scanAlertPayload read an alerts row (alias a) as
// the sdk.Alert notifiers see.
const alertPayloadCols = `a.id, a.rule_name, a.severity, a.state, a.entity_kind, a.entity_id, a.source, a.entity_name, a.site, a.summary,
	a.annotations->>'description', coalesce(a.value, 0), coalesce(a.threshold, 0), a.unit, a.starts_at, a.ends_at, a.labels`

func scanAlertPayload(row pgx.Row, a *sdk.Alert, extra ...any) error {
	var id int64
	var kind, eid, source string
	var desc *string
	var ends *time.Time
	dst := []any{&id, &a.Rule, &a.Severity, &a.State, &kind, &eid, &source, &a.Entity.Name, &a.Site, &a.Summary, &desc, &a.Value, &a.Threshold,
		&a.Unit, &a.StartsAt, &ends, &a.Labels}
	if err := row.Scan(append(dst, extra...)...); err != nil {
		return err
	}
	a.ID = strconv.FormatInt(id, 10)
	a.Entity.Kind, a.Entity.ID = kind, source+":"+eid
	if kind == KindSite || kind == KindVCenter {
		a.Entity.ID = eid
	}
	if desc != nil {
		a.Description = *desc
	}
	if a.State == "unknown" {
		a.State = sdk.StateFiring
	}
	a.StartsAt = a.StartsAt.UTC()
	if ends != nil {
		a.EndsAt = ends.UTC()
	}
	return nil
}

// maxDigestAlerts bounds the alerts one digest lists.
const maxDigestAlerts = 50

func (d *Dispatcher) digests(ctx context.Context) error {
	rows, err := d.pool.Query(ctx, `SELECT channel_id, site FROM alert_digest_items GROUP BY 1, 2
		HAVING max(created_at) < now() - make_interval(secs => $1)`, d.cfg.DigestDelay.Seconds())
	if err != nil {
		return fmt.Errorf("alert: digests: %w", err)
	}
	type group struct {
		ch   uuid.UUID
		site string
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (group, error) {
		var g group
		return g, r.Scan(&g.ch, &g.site)
	})
	if err != nil {
		return fmt.Errorf("alert: digests: %w", err)
	}
	for _, g := range groups {
		err := d.db.inTx(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `DELETE FROM alert_digest_items WHERE channel_id = $1 AND site = $2 RETURNING id, transition, payload`, g.ch, g.site)
			if err != nil {
				return err
			}
			p := notePayload{Digest: true}
			var first int64
			for rows.Next() {
				var id int64
				var tr string
				var body []byte
				if err := rows.Scan(&id, &tr, &body); err != nil {
					rows.Close()
					return err
				}
				if first == 0 || id < first {
					first = id
				}
				if len(p.Alerts) >= maxDigestAlerts {
					p.Omitted++
					continue
				}
				var a sdk.Alert
				if err := json.Unmarshal(body, &a); err == nil {
					p.Alerts = append(p.Alerts, a)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil || first == 0 {
				return err
			}
			body, err := json.Marshal(p)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO alert_notifications (idempotency_key, channel_id, kind, payload) VALUES ($1, $2, 'digest', $3)
				ON CONFLICT (idempotency_key) DO NOTHING`, fmt.Sprintf("digest-%s-%s-%d", g.ch, g.site, first), g.ch, body); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, outboxChannel)
			return err
		})
		if err != nil {
			return fmt.Errorf("alert: digest for %s/%s: %w", g.ch, g.site, err)
		}
	}
	return nil
}
