// Package ingest is the aggregator's QUIC endpoint: it enrolls agents,
// authenticates them by client certificate and renews those certificates,
// keeps the agent registry current from hellos and heartbeats, and turns
// data streams of batches into durable rows, acknowledging each batch only
// after it is committed. The samples of each newly committed batch go to
// the Config.Publisher (the realtime hub) before the ack, without waiting
// for its consumers.
//
// Backpressure: each data stream is served by one reader and one writer
// goroutine joined by a one-slot queue. While the store cannot commit
// (PostgreSQL slow or down) the writer retries the same batch with backoff and
// sends no ack; the queue fills, the reader stops reading, and QUIC flow
// control stops the agent, which keeps spooling. A stream holds at most three
// decoded batches (being stored, queued, being decoded), each bounded by
// protocol.MaxValuesPerBatch cells (~64 MB decoded, far less for real
// batches), and a connection at most Config.MaxStreams streams.
//
// Liveness: the hello and every heartbeat renew the agent's lease in the
// registry for store.LeaseIntervals heartbeat intervals, so an agent whose
// connection this server held shows disconnected on every replica soon
// after this server dies, even by SIGKILL.
//
// Shutdown drains (Serve): no new connections or streams are accepted, each
// data stream stops reading, commits what it has read, sends those acks
// and a protocol.ErrCodeGoingAway Error, and each connection is closed with
// that code once its agent has read them (the agent hangs up) or after a
// grace period; Config.DrainTimeout bounds the whole drain. An agent then
// resends only batches that were never committed: a planned restart causes
// no duplicates.
package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// Store is what ingest needs from the database. *store.Store implements it.
type Store interface {
	WriteSamples(ctx context.Context, m store.BatchMeta, p *protocol.Samples) (store.Result, error)
	WriteInventory(ctx context.Context, m store.BatchMeta, inv *protocol.Inventory) (store.Result, error)
	WriteEvents(ctx context.Context, m store.BatchMeta, ev *protocol.Events) (store.Result, error)
	WriteGap(ctx context.Context, m store.BatchMeta, g *protocol.Gap) (store.Result, error)
	RecordRejected(ctx context.Context, m store.BatchMeta, first, last int64, code protocol.ErrorCode, reason string) error
	Enroll(ctx context.Context, secret, name, version string, sign store.Signer) (store.Agent, error)
	RenewAgentCert(ctx context.Context, agentID, presentedSerial string, sign store.Signer) (store.Agent, error)
	AgentByID(ctx context.Context, id string) (store.Agent, error)
	AgentConnectedEvery(ctx context.Context, id, version, remote string, epoch uint64, certSerial string, heartbeat time.Duration) error
	AgentHeartbeatEvery(ctx context.Context, id string, hb *protocol.Heartbeat, heartbeat time.Duration) (revoked bool, err error)
	AgentDisconnected(ctx context.Context, id string) error
}

// Config configures the server.
type Config struct {
	Addr              string        // UDP listen address, e.g. ":7443"
	HeartbeatInterval time.Duration // pushed to agents; default 10s
	MaxInFlight       int           // unacked batches per data stream the agent may send; default 8
	MaxStreams        int64         // concurrent streams per connection; default 4 (control, live, backfill, one spare)
	// AgentCertLifetime is the validity of the client certificates issued
	// at enrollment and renewal; default pki.AgentCertLifetime.
	AgentCertLifetime time.Duration
	// DrainTimeout bounds the drain at shutdown (see Serve); default
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Publisher, if set, receives every samples batch once it is
	// committed (the realtime hub).
	Publisher Publisher
	// Events, if set, receives every events batch once it is committed
	// (the alert engine's alarm feed; see EventsPublisher).
	Events EventsPublisher
	// Cluster, if set, makes this server one replica of several on one
	// database: commands and revocations reach agents on any replica, and
	// the replica registers itself (see Cluster).
	Cluster *Cluster
	Logger  *slog.Logger
}

// Publisher receives the samples of every newly committed batch (not of
// redeliveries, which were published when first committed), after COMMIT
// and before the ack. It is called on the path that acknowledges batches,
// so it must not block: a consumer that cannot keep up is its problem, not
// ingest's. p is shared and must not be modified.
type Publisher interface {
	PublishSamples(site, agentID string, p *protocol.Samples)
}

// DefaultDrainTimeout is the default Config.DrainTimeout: ample for
// in-flight commits (milliseconds when PostgreSQL is healthy), and short of
// the usual stop timeouts of service managers (systemd 90 s, Kubernetes
// 30 s).
const DefaultDrainTimeout = 10 * time.Second

// peerCloseGrace is how long a draining connection waits for its agent to
// read the last acks and hang up before closing it.
const peerCloseGrace = 5 * time.Second

// Stats are the server's counters since start.
type Stats struct {
	BatchesStored, BatchesDuplicate, BatchesRejected atomic.Int64
	SamplesStored                                    atomic.Int64
	StoreRetries                                     atomic.Int64
	StreamsRefused                                   atomic.Int64
}

// Server is the QUIC ingest endpoint.
type Server struct {
	cfg   Config
	store Store
	ca    *pki.CA
	log   *slog.Logger
	Stats Stats

	udp      *net.UDPConn
	tr       *quic.Transport
	ln       *quic.Listener
	draining chan struct{} // closed when the drain starts
	mu       sync.Mutex
	conns    map[string]*agentConn // by agent ID
	gate     gate                  // maintenance mode: Pause/Resume (gate.go)
	cl       *cluster              // nil without Config.Cluster (cluster.go)
}

// New prepares a server; call Listen then Serve.
func New(cfg Config, st Store, ca *pki.CA) *Server {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 8
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 4
	}
	if cfg.AgentCertLifetime <= 0 {
		cfg.AgentCertLifetime = pki.AgentCertLifetime
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, store: st, ca: ca, log: cfg.Logger, draining: make(chan struct{}), conns: make(map[string]*agentConn),
		cl: newCluster(cfg.Cluster)}
}

// TLSConfig is the server side of mutual TLS: a client certificate is
// optional at the TLS layer only so that a new agent can enroll; every other
// stream requires one, and a certificate that is presented must chain to our
// CA and be the current (or, during a renewal, the previous) certificate of
// a registered, unrevoked agent, or the handshake fails.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{protocol.ALPN},
		Certificates: []tls.Certificate{s.ca.Server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.ca.Pool(),
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil // enrollment only; enforced per stream
			}
			_, _, err := s.checkAgent(context.Background(), cs.PeerCertificates[0])
			if err != nil {
				s.log.Warn("refused agent certificate at handshake", "err", err)
			}
			return err
		},
	}
}

// checkAgent finds the registered agent a verified client certificate
// belongs to. The certificate must be the agent's current one or, until the
// agent connects with the current one, the one it renewed with.
func (s *Server) checkAgent(ctx context.Context, cert *x509.Certificate) (store.Agent, string, error) {
	id, site, err := pki.Identity(cert)
	if err != nil {
		return store.Agent{}, "", err
	}
	ctx, cancel := context.WithTimeout(store.AllSites(ctx), 5*time.Second)
	defer cancel()
	a, err := s.store.AgentByID(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return a, "", fmt.Errorf("ingest: agent %s is not registered", id)
	case err != nil:
		return a, "", fmt.Errorf("ingest: look up agent %s: %w", id, err)
	case a.RevokedAt != nil:
		return a, "", fmt.Errorf("ingest: agent %s was revoked at %s", id, a.RevokedAt.UTC().Format(time.RFC3339))
	case a.Site != site:
		return a, "", fmt.Errorf("ingest: agent %s certificate names site %q, registry says %q", id, site, a.Site)
	}
	if serial := cert.SerialNumber.Text(16); serial != a.CertSerial && serial != a.PrevCertSerial {
		return a, "", fmt.Errorf("ingest: agent %s presented a superseded certificate", id)
	}
	return a, site, nil
}

// Listen binds the UDP address.
func (s *Server) Listen() error {
	addr, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingest: listen %s: %w", s.cfg.Addr, err)
	}
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("ingest: listen %s: %w", s.cfg.Addr, err)
	}
	key := quic.StatelessResetKey(s.ca.StatelessResetKey())
	s.udp = udp
	s.tr = &quic.Transport{Conn: udp, StatelessResetKey: &key}
	ln, err := s.tr.Listen(s.TLSConfig(), &quic.Config{
		MaxIncomingStreams:         s.cfg.MaxStreams,
		MaxIncomingUniStreams:      -1,
		KeepAlivePeriod:            5 * time.Second,
		MaxIdleTimeout:             20 * time.Second,
		MaxStreamReceiveWindow:     8 << 20,
		MaxConnectionReceiveWindow: 32 << 20,
	})
	if err != nil {
		udp.Close()
		return fmt.Errorf("ingest: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until ctx ends, then drains them and returns
// once every connection is closed, within Config.DrainTimeout: it stops
// accepting connections and streams, lets every data stream commit and
// acknowledge the batches it has read, tells the agents the aggregator is
// going away (protocol.ErrCodeGoingAway), and closes the connections. What
// is still running at the timeout is cancelled (a batch whose commit is
// cut short is not acknowledged; the agent resends it).
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	// Connections outlive ctx by the drain: they end with connCtx.
	connCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	s.log.Info("ingest listening", "addr", s.ln.Addr().String())
	var wg sync.WaitGroup
	if s.cl != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runCluster(ctx)
		}()
	}
	var err error
	for {
		conn, aerr := s.ln.Accept(ctx)
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("ingest: accept: %w", aerr)
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(connCtx, conn)
		}()
	}
	s.drain(&wg, stop)
	return err
}

// drain closes the listener, tells every connection to drain and waits for
// them, cancelling them after Config.DrainTimeout; then it closes the
// socket.
func (s *Server) drain(wg *sync.WaitGroup, stop context.CancelFunc) {
	started := time.Now()
	s.ln.Close() // handshakes in progress are refused; agents retry elsewhere or later
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	s.log.Info("draining agent connections", "connections", n, "timeout", s.cfg.DrainTimeout)
	stored := s.Stats.BatchesStored.Load()
	close(s.draining)
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.cfg.DrainTimeout):
		s.mu.Lock()
		n = len(s.conns)
		s.mu.Unlock()
		s.log.Warn("drain timed out; closing the remaining connections", "connections", n, "timeout", s.cfg.DrainTimeout)
		stop()
		<-done
	}
	s.tr.Close()
	s.udp.Close() // the transport does not close a socket it was given
	s.log.Info("ingest drained", "took", time.Since(started).Round(time.Millisecond),
		"batches_committed_while_draining", s.Stats.BatchesStored.Load()-stored)
}

// isDraining reports whether the drain has started.
func (s *Server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

// Disconnect closes an agent's live connection (after revocation): here
// at once, and with a Cluster on every other replica too.
func (s *Server) Disconnect(agentID string) {
	s.disconnectLocal(agentID)
	if s.cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := NotifyDisconnect(ctx, s.cl.cfg.Pool, agentID, s.cl.cfg.ReplicaID); err != nil {
		s.log.Warn("revocation not relayed to the other replicas; they close the connection at its next heartbeat", "agent", agentID, "err", err)
	}
}

// disconnectLocal closes the agent's connection to this replica, if any,
// and reports whether there was one.
func (s *Server) disconnectLocal(agentID string) bool {
	s.mu.Lock()
	ac := s.conns[agentID]
	s.mu.Unlock()
	if ac == nil {
		return false
	}
	ac.conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeUnauthenticated), "agent revoked")
	return true
}

// SendCommand queues a command for an agent's control stream. An agent
// connected to another replica gets it through that replica (with a
// Cluster; SendCommand then waits up to a few seconds for that replica to
// confirm). It reports false when no replica holds the agent or its queue
// is full.
func (s *Server) SendCommand(agentID string, cmd protocol.Command) bool {
	s.mu.Lock()
	_, local := s.conns[agentID]
	s.mu.Unlock()
	if local || s.cl == nil {
		return s.sendLocal(agentID, cmd)
	}
	return s.relayCommand(agentID, cmd)
}

// sendLocal queues cmd for an agent connected here.
func (s *Server) sendLocal(agentID string, cmd protocol.Command) bool {
	s.mu.Lock()
	ac := s.conns[agentID]
	s.mu.Unlock()
	if ac == nil {
		return false
	}
	select {
	case ac.commands <- cmd:
		return true
	default:
		return false
	}
}

// Connected lists the IDs of agents with a live connection: to this
// replica, and with a Cluster to any replica (live leases in the
// registry).
func (s *Server) Connected() []string {
	s.mu.Lock()
	seen := make(map[string]bool, len(s.conns))
	out := make([]string, 0, len(s.conns))
	for id := range s.conns {
		seen[id] = true
		out = append(out, id)
	}
	s.mu.Unlock()
	if s.cl == nil {
		return out
	}
	ids, err := s.liveAgents()
	if err != nil {
		s.log.Warn("agents of the other replicas unknown; listing this replica's", "err", err)
		return out
	}
	for _, id := range ids {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}
