package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/protocol"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("store: not found")

// EnsureSite creates the site if it does not exist. A site outside the
// data scope of ctx, when it has one, is ErrNotFound (see siteCommand).
func (s *Store) EnsureSite(ctx context.Context, name, description string) error {
	if err := siteCommand(ctx, name); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO sites (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, description)
	if err != nil {
		return fmt.Errorf("store: ensure site %q: %w", name, err)
	}
	return nil
}

// CreateEnrollmentToken issues a single-use token for an agent of site that
// expires after ttl, and returns its secret (shown once; only a hash is kept).
//
// A site outside the data scope of ctx, when it has one, is ErrNotFound.
func (s *Store) CreateEnrollmentToken(ctx context.Context, site string, ttl time.Duration, createdBy string) (secret string, expires time.Time, err error) {
	if err := siteCommand(ctx, site); err != nil {
		return "", time.Time{}, err
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("store: token: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(raw[:])
	h := sha256.Sum256([]byte(secret))
	expires = time.Now().Add(ttl).UTC().Truncate(time.Second)
	_, err = s.pool.Exec(ctx, `INSERT INTO enrollment_tokens (id, token_hash, site, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		uuid.New(), h[:], site, createdBy, expires)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store: create enrollment token for site %q: %w", site, err)
	}
	return secret, expires, nil
}

// Agent is a registry entry. PrevCertSerial is the certificate the agent
// last renewed with, accepted beside CertSerial until the agent connects
// with CertSerial ("" when no renewal is in progress).
type Agent struct {
	ID, Site, Name, Version string
	CertSerial              string
	CertNotAfter            time.Time
	PrevCertSerial          string
	EnrolledAt              time.Time
	FirstSeen, LastSeen     *time.Time
	// Connected reports a live connection to some aggregator replica:
	// registered as connected and within its lease (agent_is_live, see
	// LeaseIntervals), so false once a crashed replica's lease ran out.
	Connected              bool
	RemoteAddr             string
	SpoolDepth, SpoolBytes int64
	OldestUnsentMS, LagMS  int64
	Dropped                int64
	RevokedAt              *time.Time
	// Plugins are the agent's collector plugins at its last heartbeat.
	Plugins []protocol.PluginStatus
	// SpoolMaxBytes is the spool's quota at its last heartbeat (0: not
	// reported, an agent older than the field).
	SpoolMaxBytes int64
	// VCenters is the reachability of each endpoint the agent polls, at
	// its last heartbeat (empty: none reported).
	VCenters []protocol.VCenterStatus
}

// Signer issues a client certificate for an agent: at enrollment, or when
// it renews.
type Signer func(agentID, site string) (serial string, notAfter time.Time, err error)

// Enroll redeems a single-use enrollment token and registers a new agent in
// one transaction: a token is either spent on an agent that exists, or not
// spent at all. A bad token yields a *RejectError with ErrCodeBadToken whose
// message says whether it was unknown, used or expired.
func (s *Store) Enroll(ctx context.Context, secret, name, version string, sign Signer) (Agent, error) {
	h := sha256.Sum256([]byte(secret))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Agent{}, fmt.Errorf("store: enroll: %w", err)
	}
	defer tx.Rollback(ctx)
	var tokenID uuid.UUID
	var site string
	var used *time.Time
	var expires time.Time
	err = tx.QueryRow(ctx, `SELECT id, site, used_at, expires_at FROM enrollment_tokens WHERE token_hash = $1 FOR UPDATE`, h[:]).
		Scan(&tokenID, &site, &used, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Agent{}, reject(protocol.ErrCodeBadToken, "enrollment token unknown")
	case err != nil:
		return Agent{}, fmt.Errorf("store: enroll: %w", err)
	case used != nil:
		return Agent{}, reject(protocol.ErrCodeBadToken, "enrollment token already used at %s", used.UTC().Format(time.RFC3339))
	case time.Now().After(expires):
		return Agent{}, reject(protocol.ErrCodeBadToken, "enrollment token expired at %s", expires.UTC().Format(time.RFC3339))
	}
	a := Agent{ID: uuid.NewString(), Site: site, Name: name, Version: version}
	a.CertSerial, a.CertNotAfter, err = sign(a.ID, site)
	if err != nil {
		return Agent{}, fmt.Errorf("store: enroll: sign: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO agents (id, site, name, version, cert_serial, cert_not_after) VALUES ($1, $2, $3, $4, $5, $6)`,
		a.ID, site, name, version, a.CertSerial, a.CertNotAfter); err != nil {
		return Agent{}, fmt.Errorf("store: enroll: register agent: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE enrollment_tokens SET used_at = now(), agent_id = $2 WHERE id = $1`, tokenID, a.ID); err != nil {
		return Agent{}, fmt.Errorf("store: enroll: spend token: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Agent{}, fmt.Errorf("store: enroll: commit: %w", err)
	}
	return a, nil
}

const agentCols = `id::text, site, name, version, cert_serial, cert_not_after, coalesce(prev_cert_serial, ''), enrolled_at,
	first_seen, last_seen, agent_is_live(connected, lease_until), remote_addr, spool_depth, spool_bytes, oldest_unsent_ms, collection_lag_ms, dropped_batches,
	revoked_at, plugins, spool_max_bytes, vcenters`

func scanAgent(row pgx.Row) (Agent, error) {
	var a Agent
	err := row.Scan(&a.ID, &a.Site, &a.Name, &a.Version, &a.CertSerial, &a.CertNotAfter, &a.PrevCertSerial, &a.EnrolledAt,
		&a.FirstSeen, &a.LastSeen, &a.Connected, &a.RemoteAddr, &a.SpoolDepth, &a.SpoolBytes, &a.OldestUnsentMS, &a.LagMS, &a.Dropped,
		&a.RevokedAt, &a.Plugins, &a.SpoolMaxBytes, &a.VCenters)
	if a.Plugins == nil {
		a.Plugins = []protocol.PluginStatus{}
	}
	if a.VCenters == nil {
		a.VCenters = []protocol.VCenterStatus{}
	}
	return a, err
}

// RenewAgentCert issues a new certificate to a connected agent, in one
// transaction with the agent's row locked. presentedSerial is the serial of
// the certificate the agent's connection was opened with; it must be the
// agent's current or previous certificate. sign is called for the agent's
// ID and site, then the new certificate becomes current and the presented
// one previous: both are accepted until the agent connects with the new one
// (see AgentConnected). Keeping the presented certificate, not the stored
// current one, means an agent that stopped before saving an earlier renewal
// (it still holds the previous certificate) is never locked out.
//
// An unknown or revoked agent, or a presented certificate that is neither
// current nor previous (superseded), yields a *RejectError with
// ErrCodeUnauthenticated; nothing changes then, nor when sign fails.
func (s *Store) RenewAgentCert(ctx context.Context, agentID, presentedSerial string, sign Signer) (Agent, error) {
	if _, err := uuid.Parse(agentID); err != nil {
		return Agent{}, reject(protocol.ErrCodeUnauthenticated, "agent %q is not registered", agentID)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Agent{}, fmt.Errorf("store: renew certificate of agent %s: %w", agentID, err)
	}
	defer tx.Rollback(ctx)
	a, err := scanAgent(tx.QueryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE id = $1 FOR UPDATE`, agentID))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Agent{}, reject(protocol.ErrCodeUnauthenticated, "agent %s is not registered", agentID)
	case err != nil:
		return Agent{}, fmt.Errorf("store: renew certificate of agent %s: %w", agentID, err)
	case a.RevokedAt != nil:
		return Agent{}, reject(protocol.ErrCodeUnauthenticated, "agent %s was revoked at %s", agentID, a.RevokedAt.UTC().Format(time.RFC3339))
	case presentedSerial == "" || (presentedSerial != a.CertSerial && presentedSerial != a.PrevCertSerial):
		return Agent{}, reject(protocol.ErrCodeUnauthenticated, "agent %s: the certificate of this connection (serial %s) was superseded; reconnect with the current one", agentID, presentedSerial)
	}
	serial, notAfter, err := sign(a.ID, a.Site)
	if err != nil {
		return Agent{}, fmt.Errorf("store: renew certificate of agent %s: sign: %w", agentID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE agents SET prev_cert_serial = $2, cert_serial = $3, cert_not_after = $4 WHERE id = $1`,
		a.ID, presentedSerial, serial, notAfter); err != nil {
		return Agent{}, fmt.Errorf("store: renew certificate of agent %s: %w", agentID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Agent{}, fmt.Errorf("store: renew certificate of agent %s: commit: %w", agentID, err)
	}
	a.PrevCertSerial, a.CertSerial, a.CertNotAfter = presentedSerial, serial, notAfter
	return a, nil
}

// AgentByID returns one agent, or ErrNotFound (also when its site is
// outside the caller's data scope).
func (s *Store) AgentByID(ctx context.Context, id string) (Agent, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return Agent{}, err
	}
	if _, err := uuid.Parse(id); err != nil {
		return Agent{}, ErrNotFound
	}
	a := args{id}
	ag, err := scanAgent(s.pool.QueryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE id = $1 AND `+sc.siteSQL("site", &a), a...))
	if errors.Is(err, pgx.ErrNoRows) {
		return Agent{}, ErrNotFound
	}
	if err != nil {
		return Agent{}, fmt.Errorf("store: agent %s: %w", id, err)
	}
	return ag, nil
}

// Agents lists the agents of the sites in the caller's data scope, by site
// and name.
func (s *Store) Agents(ctx context.Context) ([]Agent, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	var a args
	rows, err := s.pool.Query(ctx, `SELECT `+agentCols+` FROM agents WHERE `+sc.siteSQL("site", &a)+` ORDER BY site, name, id`, a...)
	if err != nil {
		return nil, fmt.Errorf("store: agents: %w", err)
	}
	defer rows.Close()
	var out []Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: agents: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// RevokeAgent marks an agent revoked; its certificate is refused from then
// on. An agent outside the caller's data scope is ErrNotFound.
func (s *Store) RevokeAgent(ctx context.Context, id string) error {
	sc, err := scopeOf(ctx)
	if err != nil {
		return err
	}
	if _, err := uuid.Parse(id); err != nil {
		return ErrNotFound
	}
	a := args{id}
	tag, err := s.pool.Exec(ctx, `UPDATE agents SET revoked_at = coalesce(revoked_at, now()), connected = false WHERE id = $1 AND `+
		sc.siteSQL("site", &a), a...)
	if err != nil {
		return fmt.Errorf("store: revoke agent %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Liveness. The replica that holds an agent's connection sets connected
// at the hello and clears it when the connection ends, but a replica that
// crashes never clears it. So each hello and heartbeat also renews a lease,
// lease_until, LeaseIntervals heartbeat intervals ahead by the database's
// clock, and an agent is live ("connected" in Agent and everywhere else)
// while connected AND the lease runs: the SQL function agent_is_live
// (migration 007) is that one definition, for every reader. An agent whose
// replica died shows disconnected, on every replica, at most LeaseIntervals
// heartbeat intervals after its last sign of life.
const (
	// LeaseIntervals is how many heartbeat intervals a lease lasts: two
	// heartbeats may be late or lost before a live agent looks dead.
	LeaseIntervals = 3
	// DefaultHeartbeatInterval is the aggregator's default
	// ingest.heartbeat_interval, the lease basis of AgentConnected and
	// AgentHeartbeat.
	DefaultHeartbeatInterval = 10 * time.Second
)

// leaseMS is the lease, in milliseconds, of an agent that heartbeats every
// heartbeat (DefaultHeartbeatInterval if not positive).
func leaseMS(heartbeat time.Duration) int64 {
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeatInterval
	}
	return (LeaseIntervals * heartbeat).Milliseconds()
}

// AgentConnected is AgentConnectedEvery with DefaultHeartbeatInterval.
func (s *Store) AgentConnected(ctx context.Context, id, version, remote string, epoch uint64, certSerial string) error {
	return s.AgentConnectedEvery(ctx, id, version, remote, epoch, certSerial, DefaultHeartbeatInterval)
}

// AgentConnectedEvery records a hello over a connection this replica holds,
// from an agent told to heartbeat every heartbeat, and renews its lease.
// certSerial is the serial of the certificate the connection was opened
// with: when it is the agent's current certificate, the previous one (kept
// valid across a renewal, see RenewAgentCert) is retired and refused from
// then on.
func (s *Store) AgentConnectedEvery(ctx context.Context, id, version, remote string, epoch uint64, certSerial string, heartbeat time.Duration) error {
	// One statement: the registry row, the end of a session this agent
	// left open (its replica died, or it reconnected before the close was
	// recorded), and the new session.
	_, err := s.pool.Exec(ctx, `WITH a AS (
		    UPDATE agents SET version = $2, remote_addr = $3, epoch = $4, connected = true,
		        first_seen = coalesce(first_seen, now()), last_seen = now(), lease_until = now() + $6 * interval '1 millisecond',
		        prev_cert_serial = CASE WHEN cert_serial = $5 THEN NULL ELSE prev_cert_serial END
		    WHERE id = $1 RETURNING id, site
		), closed AS (
		    UPDATE agent_sessions SET ended_at = least(now(), last_seen), end_reason = 'reconnected'
		    WHERE agent_id = $1 AND ended_at IS NULL
		)
		INSERT INTO agent_sessions (agent_id, site, lease_until) SELECT id, site, now() + $6 * interval '1 millisecond' FROM a`,
		id, version, remote, int64(epoch), certSerial, leaseMS(heartbeat))
	if err != nil {
		return fmt.Errorf("store: agent %s connected: %w", id, err)
	}
	return nil
}

// AgentHeartbeat is AgentHeartbeatEvery with DefaultHeartbeatInterval.
func (s *Store) AgentHeartbeat(ctx context.Context, id string, hb *protocol.Heartbeat) (revoked bool, err error) {
	return s.AgentHeartbeatEvery(ctx, id, hb, DefaultHeartbeatInterval)
}

// AgentHeartbeatEvery records the health report of an agent that
// heartbeats every heartbeat, renews its lease, and reports whether the
// agent has been revoked (by any aggregator replica or the CLI) meanwhile.
func (s *Store) AgentHeartbeatEvery(ctx context.Context, id string, hb *protocol.Heartbeat, heartbeat time.Duration) (revoked bool, err error) {
	err = s.pool.QueryRow(ctx, `WITH sess AS (
		    UPDATE agent_sessions SET last_seen = now(), lease_until = now() + $7 * interval '1 millisecond'
		    WHERE agent_id = $1 AND ended_at IS NULL
		)
		UPDATE agents SET last_seen = now(), connected = revoked_at IS NULL,
		lease_until = now() + $7 * interval '1 millisecond', spool_depth = $2, spool_bytes = $3,
		oldest_unsent_ms = $4, collection_lag_ms = $5, dropped_batches = $6, plugins = $8, spool_max_bytes = $9, vcenters = $10
		WHERE id = $1 RETURNING revoked_at IS NOT NULL`,
		id, int64(hb.SpoolDepth), int64(hb.SpoolBytes), hb.OldestUnsentAge, hb.CollectionLag, int64(hb.Dropped), leaseMS(heartbeat),
		heartbeatPlugins(hb), clampInt64(hb.SpoolMaxBytes), heartbeatVCenters(hb)).Scan(&revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil // deleted from the registry: as good as revoked
	}
	if err != nil {
		return false, fmt.Errorf("store: agent %s heartbeat: %w", id, err)
	}
	return revoked, nil
}

// heartbeatPlugins is the plugins column's value for hb: its list, never
// null.
func heartbeatPlugins(hb *protocol.Heartbeat) []protocol.PluginStatus {
	out := make([]protocol.PluginStatus, len(hb.Plugins))
	for i, p := range hb.Plugins {
		// The texts come from plugins (an error may carry a command's
		// stderr): PostgreSQL's jsonb refuses NUL and invalid UTF-8, and
		// one such byte must not fail every heartbeat of the agent.
		p.Name, p.State, p.Version, p.LastError = cleanText(p.Name), cleanText(p.State), cleanText(p.Version), cleanText(p.LastError)
		out[i] = p
	}
	return out
}

// heartbeatVCenters is the vcenters column's value for hb: its list
// (cleaned as plugins are: the error texts come from vCenter, the network
// and the agent's TLS stack), never null, at most protocol.MaxVCenters
// entries, each error text at most protocol.MaxPluginErrorBytes.
func heartbeatVCenters(hb *protocol.Heartbeat) []protocol.VCenterStatus {
	n := min(len(hb.VCenters), protocol.MaxVCenters)
	out := make([]protocol.VCenterStatus, n)
	for i, v := range hb.VCenters[:n] {
		v.Source, v.LastError = cleanText(v.Source), truncateUTF8(cleanText(v.LastError), protocol.MaxPluginErrorBytes)
		out[i] = v
	}
	return out
}

// truncateUTF8 cuts s to at most n bytes, not inside a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// clampInt64 is u as a bigint (PostgreSQL has no unsigned type).
func clampInt64(u uint64) int64 {
	return int64(min(u, math.MaxInt64))
}

// cleanText replaces NUL and invalid UTF-8 with U+FFFD.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// AgentDisconnected records that an agent's connection ended, and ends its
// lease.
func (s *Store) AgentDisconnected(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `WITH sess AS (
		    UPDATE agent_sessions SET ended_at = now(), last_seen = now(), end_reason = 'disconnected'
		    WHERE agent_id = $1 AND ended_at IS NULL
		)
		UPDATE agents SET connected = false, last_seen = now(), lease_until = NULL WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: agent %s disconnected: %w", id, err)
	}
	return nil
}
