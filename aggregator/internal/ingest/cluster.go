package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/collection"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// CommandChannel is the PostgreSQL notification channel on which replicas
// relay agent commands and revocations to the replica holding the agent's
// connection (see Cluster).
const CommandChannel = "vmpulse_agent_commands"

// relayTimeout is how long SendCommand waits for the replica holding an
// agent to confirm it queued a relayed command.
const relayTimeout = 3 * time.Second

// Cluster makes a server one replica of several on one database. Without
// it (nil Config.Cluster) commands reach only the agents connected here.
//
// Agent commands: SendCommand to an agent connected to another replica is
// relayed as a notification on CommandChannel; the replica holding the
// agent queues it on the agent's control stream and answers with an
// acknowledgement, which SendCommand waits for (relayTimeout). Disconnect
// (after a revocation) is broadcast the same way, and every replica closes
// the agent's connection at once (the heartbeat check remains the
// fallback, within one heartbeat interval, should a notification be
// missed while a replica's listening connection is down). Connected
// lists the agents connected to any replica (the registry's live leases).
//
// Collection settings: the replica listens on collection.Channel too and
// pushes the settings to its agents (collection_push.go).
//
// Registry: the server registers the replica (Registry.HeartbeatReplica)
// at start and every heartbeat interval with its version, addresses,
// connected agents and counters, and marks it stopped at shutdown.
type Cluster struct {
	// Pool is the database: a dedicated connection LISTENs on
	// CommandChannel; notifications and the live-agent list use the pool.
	Pool *pgxpool.Pool
	// Registry records the replica; *store.Store implements it.
	Registry ReplicaRegistry
	// ReplicaID names this replica; default DefaultReplicaID().
	ReplicaID string
	// Version is the binary's version.
	Version string
	// HTTPAddr returns the API's bound address (read at each heartbeat).
	HTTPAddr func() string
}

// ReplicaRegistry is where replicas register themselves.
type ReplicaRegistry interface {
	HeartbeatReplica(ctx context.Context, r store.Replica) error
	StopReplica(ctx context.Context, id string) error
}

// relayMsg is one notification on CommandChannel.
type relayMsg struct {
	ID    string            `json:"id"`
	From  string            `json:"from"`
	Op    string            `json:"op"` // "command", "disconnect", "ack"
	Agent string            `json:"agent"`
	Cmd   *protocol.Command `json:"cmd,omitempty"`
	To    string            `json:"to,omitempty"` // for "ack": the asking replica
}

// Relay operations.
const (
	opCommand    = "command"
	opDisconnect = "disconnect"
	opAck        = "ack"
)

// cluster is the server's state for Config.Cluster.
type cluster struct {
	cfg       *Cluster
	started   time.Time
	listening atomic.Bool
	mu        sync.Mutex
	waiting   map[string]chan struct{} // relayed commands awaiting an ack, by id
	// collectionReq asks for a check of the collection settings
	// (collection_push.go).
	collectionReq chan struct{}
}

// DefaultReplicaID is hostname:pid:nonce, the nonce (4 random hex
// digits) telling apart replicas in one process (tests) and a pid reused
// after a restart.
func DefaultReplicaID() string {
	host, _ := os.Hostname()
	var b [2]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func newCluster(c *Cluster) *cluster {
	if c == nil || c.Pool == nil {
		return nil
	}
	if c.ReplicaID == "" {
		c.ReplicaID = DefaultReplicaID()
	}
	return &cluster{cfg: c, started: time.Now(), waiting: map[string]chan struct{}{}, collectionReq: make(chan struct{}, 1)}
}

// ReplicaID is this replica's name ("" without a Cluster).
func (s *Server) ReplicaID() string {
	if s.cl == nil {
		return ""
	}
	return s.cl.cfg.ReplicaID
}

// RelayListening reports whether this replica currently receives relayed
// commands (its LISTEN connection is up). Always false without a Cluster.
func (s *Server) RelayListening() bool { return s.cl != nil && s.cl.listening.Load() }

// runCluster listens for relayed commands and renews the replica's row
// until ctx ends, then marks the replica stopped.
func (s *Server) runCluster(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.runCollectionPush(ctx)
	}()
	go func() {
		defer wg.Done()
		delay := 500 * time.Millisecond
		for ctx.Err() == nil {
			err := s.listenRelay(ctx)
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("command relay: listening connection lost; reconnecting", "err", err, "in", delay)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
		}
	}()
	go func() {
		defer wg.Done()
		s.heartbeatReplica(ctx)
	}()
	wg.Wait()
}

// listenRelay holds a LISTEN connection and serves notifications until it
// fails or ctx ends.
func (s *Server) listenRelay(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, s.cl.cfg.Pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+CommandChannel+`; LISTEN `+collection.Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.cl.listening.Store(true)
	defer s.cl.listening.Store(false)
	// A change announced while we were not listening is found now.
	s.cl.requestCollection()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel == collection.Channel {
			// The payload is not trusted (any role may NOTIFY): the push
			// reads the settings from their table.
			s.cl.requestCollection()
			continue
		}
		s.handleRelay(ctx, n.Payload)
	}
}

// handleRelay serves one notification.
func (s *Server) handleRelay(ctx context.Context, payload string) {
	var m relayMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		s.log.Warn("command relay: malformed notification ignored", "err", err)
		return
	}
	if m.From == s.cl.cfg.ReplicaID {
		return // our own
	}
	if _, err := uuid.Parse(m.Agent); err != nil && m.Op != opAck {
		s.log.Warn("command relay: notification for a malformed agent id ignored", "op", m.Op, "from", m.From)
		return
	}
	switch m.Op {
	case opCommand:
		if m.Cmd == nil {
			return
		}
		// Any role that can connect may NOTIFY: a command that the
		// protocol would refuse to write is dropped here, not queued to
		// end the agent's control stream.
		if err := protocol.WriteMessage(io.Discard, m.Cmd); err != nil {
			s.log.Warn("command relay: invalid command ignored", "agent", m.Agent, "from", m.From, "err", err)
			return
		}
		if !s.sendLocal(m.Agent, *m.Cmd) {
			return // not ours (or its queue is full): the asker times out
		}
		s.log.Info("relayed command queued", "agent", m.Agent, "command", m.Cmd.Name, "from", m.From)
		if err := notify(ctx, s.cl.cfg.Pool, relayMsg{ID: m.ID, From: s.cl.cfg.ReplicaID, Op: opAck, Agent: m.Agent, To: m.From}); err != nil {
			s.log.Warn("command relay: ack not sent", "err", err)
		}
	case opDisconnect:
		if s.disconnectLocal(m.Agent) {
			s.log.Warn("agent revoked on another replica; its connection here closed", "agent", m.Agent, "from", m.From)
		}
	case opAck:
		if m.To != s.cl.cfg.ReplicaID {
			return
		}
		s.cl.mu.Lock()
		ch := s.cl.waiting[m.ID]
		delete(s.cl.waiting, m.ID)
		s.cl.mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}
}

// notify sends m on CommandChannel.
func notify(ctx context.Context, pool *pgxpool.Pool, m relayMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `SELECT pg_notify($1, $2)`, CommandChannel, string(b)); err != nil {
		return fmt.Errorf("ingest: notify: %w", err)
	}
	return nil
}

// NotifyDisconnect tells every replica listening on pool's database to
// close the agent's connection (after a revocation made outside a serving
// aggregator, e.g. on the command line).
func NotifyDisconnect(ctx context.Context, pool *pgxpool.Pool, agentID, from string) error {
	return notify(ctx, pool, relayMsg{ID: newRelayID(), From: from, Op: opDisconnect, Agent: agentID})
}

// relayCommand asks the replica holding agentID to queue cmd and waits for
// its acknowledgement.
func (s *Server) relayCommand(agentID string, cmd protocol.Command) bool {
	if !s.cl.listening.Load() {
		// Without our LISTEN connection the ack could not arrive.
		s.log.Warn("command not relayed: this replica's relay connection is down", "agent", agentID, "command", cmd.Name)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	// Only an agent whose lease is live is held by some replica.
	var live bool
	if err := s.cl.cfg.Pool.QueryRow(ctx, `SELECT coalesce(bool_or(agent_is_live(connected, lease_until)), false)
		FROM agents WHERE id::text = $1 AND revoked_at IS NULL`, agentID).Scan(&live); err != nil {
		s.log.Warn("command not relayed: agent state unknown", "agent", agentID, "err", err)
		return false
	}
	if !live {
		return false
	}
	id := newRelayID()
	ch := make(chan struct{})
	s.cl.mu.Lock()
	s.cl.waiting[id] = ch
	s.cl.mu.Unlock()
	defer func() {
		s.cl.mu.Lock()
		delete(s.cl.waiting, id)
		s.cl.mu.Unlock()
	}()
	c := cmd
	if err := notify(ctx, s.cl.cfg.Pool, relayMsg{ID: id, From: s.cl.cfg.ReplicaID, Op: opCommand, Agent: agentID, Cmd: &c}); err != nil {
		s.log.Warn("command not relayed", "agent", agentID, "command", cmd.Name, "err", err)
		return false
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		s.log.Warn("relayed command not acknowledged by any replica", "agent", agentID, "command", cmd.Name, "timeout", relayTimeout)
		return false
	}
}

// liveAgents lists the agents whose lease is live in the registry (so
// connected to some replica), for Connected.
func (s *Server) liveAgents() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := s.cl.cfg.Pool.Query(ctx, `SELECT id::text FROM agents WHERE revoked_at IS NULL AND agent_is_live(connected, lease_until)`)
	if err != nil {
		return nil, fmt.Errorf("ingest: live agents: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("ingest: live agents: %w", err)
	}
	return ids, nil
}

// heartbeatReplica registers the replica and renews its row every
// heartbeat interval; at the end it marks the replica stopped.
func (s *Server) heartbeatReplica(ctx context.Context) {
	reg := s.cl.cfg.Registry
	if reg == nil {
		return
	}
	host, _ := os.Hostname()
	beat := func() {
		r := store.Replica{ID: s.cl.cfg.ReplicaID, Version: s.cl.cfg.Version, Hostname: host, StartedAt: s.cl.started,
			HeartbeatEvery: s.cfg.HeartbeatInterval, BatchesStored: s.Stats.BatchesStored.Load(),
			SamplesStored: s.Stats.SamplesStored.Load(), BatchesRejected: s.Stats.BatchesRejected.Load()}
		if s.ln != nil {
			r.IngestAddr = s.ln.Addr().String()
		}
		if s.cl.cfg.HTTPAddr != nil {
			r.HTTPAddr = s.cl.cfg.HTTPAddr()
		}
		s.mu.Lock()
		r.AgentsConnected = len(s.conns)
		s.mu.Unlock()
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := reg.HeartbeatReplica(hctx, r); err != nil && ctx.Err() == nil {
			s.log.Warn("replica heartbeat failed", "err", err)
		}
	}
	beat()
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := reg.StopReplica(sctx, s.cl.cfg.ReplicaID); err != nil {
				s.log.Warn("replica not marked stopped", "err", err)
			}
			cancel()
			return
		case <-t.C:
			beat()
		}
	}
}

func newRelayID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
