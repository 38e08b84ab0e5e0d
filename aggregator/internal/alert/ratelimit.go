package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Per-channel rate limits and storm digests.
//
// A channel's Rates bound what it is sent: at most PerMinute notifications
// in any 60 seconds, PerSecond in any second — a token bucket whose every
// token comes back one window after it was spent, so no window ever holds
// more than the provider allows. The lease holder keeps the log of sends
// (every claimed attempt, failures included: they reached the provider)
// and seeds it from the database when it takes the lease.
//
// When more of a channel's notifications are due than its budget allows,
// the outbox merges all of them into one digest (state merged, merged_into
// naming the digest, in the same transaction) that takes a single token:
// a storm reaches the channel as a few digests, never beyond its limit,
// and nothing is dropped — every alert is listed in a digest (the first
// maxDigestAlerts of each, by rule and site, and the count of the others)
// and every merged notification stays queryable. Resolved notices are
// merged like firing ones: never held back behind a group interval.

// rateWindow is the window of PerMinute, with a margin for the clocks of
// the aggregator and the provider.
const rateWindow = 61 * time.Second

// sendLog is the send times of one channel in the last rateWindow,
// oldest first.
type sendLog []time.Time

func (l *sendLog) prune(now time.Time) {
	i := 0
	for i < len(*l) && now.Sub((*l)[i]) >= rateWindow {
		i++
	}
	*l = (*l)[i:]
}

func (l sendLog) since(t time.Time) int {
	i, _ := slices.BinarySearchFunc(l, t, func(a, b time.Time) int { return a.Compare(b) })
	for i < len(l) && !l[i].After(t) {
		i++
	}
	return len(l) - i
}

// budget is how many sends the rates allow at now (-1: unlimited).
func (l *sendLog) budget(r Rates, now time.Time) int {
	if r.PerMinute <= 0 && r.PerSecond <= 0 {
		return -1
	}
	l.prune(now)
	b := int(^uint(0) >> 1)
	if r.PerMinute > 0 {
		b = min(b, r.PerMinute-l.since(now.Add(-rateWindow)))
	}
	if r.PerSecond > 0 {
		b = min(b, r.PerSecond-l.since(now.Add(-1100*time.Millisecond)))
	}
	return max(b, 0)
}

func (l *sendLog) add(t time.Time) {
	*l = append(*l, t)
	if n := len(*l); n > 1 && (*l)[n-2].After(t) {
		slices.SortFunc(*l, func(a, b time.Time) int { return a.Compare(b) })
	}
}

// limiter is the send logs of the lease holder.
type limiter struct {
	logs map[uuid.UUID]*sendLog
}

func (m *limiter) log(ch uuid.UUID) *sendLog {
	if m.logs == nil {
		m.logs = map[uuid.UUID]*sendLog{}
	}
	l := m.logs[ch]
	if l == nil {
		l = &sendLog{}
		m.logs[ch] = l
	}
	return l
}

// seedLimits loads the sends of the last minute (recorded attempts, and
// claims whose outcome was never recorded) into a fresh limiter.
func (d *Dispatcher) seedLimits(ctx context.Context) error {
	lim := &limiter{}
	rows, err := d.pool.Query(ctx, `
		SELECT n.channel_id, a.started_at FROM alert_notification_attempts a JOIN alert_notifications n ON n.id = a.notification_id
		WHERE a.started_at > now() - make_interval(secs => $1)
		UNION ALL
		SELECT channel_id, claimed_at FROM alert_notifications WHERE state = 'sending' AND claimed_at > now() - make_interval(secs => $1)
		ORDER BY 2`, rateWindow.Seconds())
	if err != nil {
		return fmt.Errorf("alert dispatcher: seed rate limits: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ch uuid.UUID
		var at time.Time
		if err := rows.Scan(&ch, &at); err != nil {
			return fmt.Errorf("alert dispatcher: seed rate limits: %w", err)
		}
		lim.log(ch).add(at)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("alert dispatcher: seed rate limits: %w", err)
	}
	d.lim = lim
	return nil
}

// limitedChannels reads the channels with rates in force.
func (d *Dispatcher) limitedChannels(ctx context.Context) (map[uuid.UUID]Rates, error) {
	rows, err := d.pool.Query(ctx, `SELECT id, type, rate_per_minute, rate_per_second FROM notification_channels`)
	if err != nil {
		return nil, fmt.Errorf("alert dispatcher: channel rates: %w", err)
	}
	defer rows.Close()
	out := map[uuid.UUID]Rates{}
	for rows.Next() {
		var c Channel
		if err := rows.Scan(&c.ID, &c.Type, &c.RatePerMinute, &c.RatePerSecond); err != nil {
			return nil, fmt.Errorf("alert dispatcher: channel rates: %w", err)
		}
		if r := c.Rates(); r.PerMinute > 0 || r.PerSecond > 0 {
			out[c.ID] = r
		}
	}
	return out, rows.Err()
}

// dueCount counts a channel's notifications due for delivery under epoch.
func (d *Dispatcher) dueCount(ctx context.Context, ch uuid.UUID, epoch int64) (pending, total int, err error) {
	err = d.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FROM alert_notifications
		WHERE channel_id = $1 AND ((state = 'pending' AND next_attempt_at <= $3) OR (state = 'sending' AND claimed_epoch < $2))`,
		ch, epoch, d.due).Scan(&pending, &total)
	if err != nil {
		return 0, 0, fmt.Errorf("alert dispatcher: due of channel %s: %w", ch, err)
	}
	return pending, total, nil
}

// mergeStorm merges every pending due notification of channel ch into
// one digest, under the lease epoch; it returns how many it merged.
func (d *Dispatcher) mergeStorm(ctx context.Context, ch uuid.UUID, epoch int64) (int, error) {
	return d.merge(ctx, ch, epoch, "")
}

// mergeGroups merges the pending due notifications of each group (rules
// with group_by) that has more than one into one message.
func (d *Dispatcher) mergeGroups(ctx context.Context, epoch int64) error {
	rows, err := d.pool.Query(ctx, `SELECT channel_id, group_key FROM alert_notifications
		WHERE state = 'pending' AND group_key IS NOT NULL AND next_attempt_at <= $1 GROUP BY 1, 2 HAVING count(*) > 1`, d.due)
	if err != nil {
		return fmt.Errorf("alert dispatcher: groups: %w", err)
	}
	type group struct {
		ch  uuid.UUID
		key string
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (group, error) {
		var g group
		return g, r.Scan(&g.ch, &g.key)
	})
	if err != nil {
		return fmt.Errorf("alert dispatcher: groups: %w", err)
	}
	for _, g := range groups {
		n, err := d.merge(ctx, g.ch, epoch, g.key)
		if err != nil {
			return err
		}
		if n > 0 {
			d.Stats.Grouped.Add(int64(n))
		}
	}
	return nil
}

// merge merges the pending due notifications of channel ch (of group, or
// all of them when group is "") into one digest, under the lease epoch;
// it returns how many it merged.
func (d *Dispatcher) merge(ctx context.Context, ch uuid.UUID, epoch int64, group string) (int, error) {
	merged := 0
	err := d.db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH lease AS (SELECT epoch FROM alert_dispatch_lease WHERE id = 1 AND epoch = $2 FOR SHARE)
			SELECT n.id, n.payload FROM alert_notifications n
			WHERE n.channel_id = $1 AND n.state = 'pending' AND n.next_attempt_at <= $4 AND EXISTS (SELECT 1 FROM lease)
			  AND ($3 = '' OR n.group_key = $3)
			ORDER BY n.id FOR UPDATE OF n SKIP LOCKED`, ch, epoch, group, d.due)
		if err != nil {
			return err
		}
		var ids []int64
		var all []sdk.Alert
		omitted := 0
		for rows.Next() {
			var id int64
			var body []byte
			if err := rows.Scan(&id, &body); err != nil {
				rows.Close()
				return err
			}
			var p notePayload
			if err := json.Unmarshal(body, &p); err != nil {
				rows.Close()
				return fmt.Errorf("notification %d: payload: %w", id, err)
			}
			ids = append(ids, id)
			all = append(all, p.Alerts...)
			omitted += p.Omitted
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) < 2 {
			return nil
		}
		// Grouped by rule and site, resolved notices beside their firing.
		slices.SortStableFunc(all, func(a, b sdk.Alert) int {
			return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Site, b.Site), cmp.Compare(a.Entity.Name, b.Entity.Name))
		})
		p := notePayload{Digest: true, Storm: group == ""}
		if len(all) > maxDigestAlerts {
			p.Alerts, p.Omitted = all[:maxDigestAlerts], omitted+len(all)-maxDigestAlerts
		} else {
			p.Alerts, p.Omitted = all, omitted
		}
		body, err := json.Marshal(p)
		if err != nil {
			return err
		}
		var digest int64
		prefix := "storm-"
		if group != "" {
			prefix = "group-"
		}
		if err := tx.QueryRow(ctx, `INSERT INTO alert_notifications (idempotency_key, channel_id, kind, payload) VALUES ($1, $2, 'digest', $3) RETURNING id`,
			prefix+ch.String()+"-"+strconv.FormatInt(ids[0], 10), ch, body).Scan(&digest); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE alert_notifications SET state = 'merged', merged_into = $2 WHERE id = ANY($1)`, ids, digest); err != nil {
			return err
		}
		merged = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("alert dispatcher: digest of channel %s: %w", ch, err)
	}
	return merged, nil
}

// limitedClaims decides, for each rate-limited channel with work due, how
// many notifications may be claimed now, merging a storm into a digest
// first; it returns the claim limit per channel (channels absent: none).
func (d *Dispatcher) limitedClaims(ctx context.Context, epoch int64, rates map[uuid.UUID]Rates) (map[uuid.UUID]int, error) {
	out := map[uuid.UUID]int{}
	now := time.Now()
	ids := make([]uuid.UUID, 0, len(rates))
	for id := range rates {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return cmp.Compare(a.String(), b.String()) })
	for _, ch := range ids {
		b := d.lim.log(ch).budget(rates[ch], now)
		if b == 0 {
			continue
		}
		pending, total, err := d.dueCount(ctx, ch, epoch)
		if err != nil {
			return nil, err
		}
		if total == 0 {
			continue
		}
		if total > b && pending > 1 {
			n, err := d.mergeStorm(ctx, ch, epoch)
			if err != nil {
				return nil, err
			}
			if n > 0 {
				d.Stats.Merged.Add(int64(n))
				d.Stats.Digests.Add(1)
				d.log.Info("alert dispatcher: storm merged into a digest", "channel", ch, "notifications", n, "budget", b)
			}
		}
		out[ch] = b
	}
	return out, nil
}
