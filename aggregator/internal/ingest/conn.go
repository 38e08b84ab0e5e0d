package ingest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// agentConn is one authenticated agent connection.
type agentConn struct {
	conn     *quic.Conn
	agentID  string
	site     string
	serial   string // of the certificate the connection was opened with
	log      *slog.Logger
	hello    chan struct{} // closed once the hello was accepted
	claimed  atomic.Bool   // a control stream has claimed the hello
	commands chan protocol.Command
	// unsettled counts the accepted streams that a drain must wait for:
	// data streams until they end, every other stream until its first
	// message shows it is not one.
	unsettled sync.WaitGroup
	hadData   atomic.Bool // a data stream was served: acks may be in flight
	// collectionRev is the revision of the collection settings the agent
	// was sent (in its Welcome or a command); see collection.go.
	collectionRev atomic.Int64
}

func (s *Server) serveConn(ctx context.Context, conn *quic.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-conn.Context().Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		s.serveEnrollment(ctx, conn)
		return
	}
	a, site, err := s.checkAgent(ctx, certs[0])
	if err != nil {
		s.log.Warn("refused agent connection", "remote", conn.RemoteAddr().String(), "err", err)
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeUnauthenticated), err.Error())
		return
	}
	ac := &agentConn{
		conn:     conn,
		agentID:  a.ID,
		site:     site,
		serial:   certs[0].SerialNumber.Text(16),
		log:      s.log.With("agent", a.ID, "site", site),
		hello:    make(chan struct{}),
		commands: make(chan protocol.Command, 16),
	}
	s.mu.Lock()
	old := s.conns[a.ID]
	s.conns[a.ID] = ac
	s.mu.Unlock()
	if old != nil {
		old.conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeShutdown), "superseded by a newer connection")
	}
	defer func() {
		s.mu.Lock()
		current := s.conns[a.ID] == ac
		if current {
			delete(s.conns, a.ID)
		}
		s.mu.Unlock()
		if !current {
			// A newer connection of the same agent superseded this one: the
			// registry describes that one now.
			return
		}
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer dcancel()
		if err := s.store.AgentDisconnected(dctx, a.ID); err != nil {
			ac.log.Warn("registry update from a heartbeat failed", "err", err)
		}
		ac.log.Info("agent disconnected")
	}()
	var wg sync.WaitGroup
	defer func() {
		if s.isDraining() {
			conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeGoingAway), "aggregator shutting down")
		} else {
			conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeShutdown), "connection ended")
		}
		cancel()
		wg.Wait()
	}()
	// Streams are accepted until the connection ends or the drain starts.
	actx, stopAccepting := context.WithCancel(ctx)
	defer stopAccepting()
	go func() {
		select {
		case <-s.draining:
			stopAccepting()
		case <-actx.Done():
		}
	}()
	for {
		st, err := conn.AcceptStream(actx)
		if err != nil {
			break
		}
		ac.unsettled.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveStream(ctx, ac, st)
		}()
	}
	if ctx.Err() == nil && s.isDraining() {
		s.drainConn(ctx, ac)
	}
}

// drainConn waits for the connection's data streams to send their last
// acks and the going-away Error, then, if there were any, for the agent,
// which has read them all, to close the connection (at most
// peerCloseGrace): closing it ourselves would discard acks not yet
// delivered. Cancelling ctx (the drain's timeout) cuts it short.
func (s *Server) drainConn(ctx context.Context, ac *agentConn) {
	settled := make(chan struct{})
	go func() {
		ac.unsettled.Wait()
		close(settled)
	}()
	select {
	case <-settled:
	case <-ctx.Done():
		return
	}
	if !ac.hadData.Load() {
		return // nothing in flight: the close says going-away as well
	}
	t := time.NewTimer(peerCloseGrace)
	defer t.Stop()
	select {
	case <-ac.conn.Context().Done():
	case <-t.C:
		ac.log.Info("agent did not close its connection after the drain; closing it")
	case <-ctx.Done():
	}
}

// serveStream dispatches on the stream's first message: a Hello makes it the
// control stream, a Batch a data stream, a RenewRequest a renewal.
func (s *Server) serveStream(ctx context.Context, ac *agentConn, st *quic.Stream) {
	// A drain waits for data streams only (see agentConn.unsettled).
	settle := sync.OnceFunc(ac.unsettled.Done)
	defer settle()
	r := bufio.NewReaderSize(st, 64<<10)
	m, err := protocol.ReadMessage(r)
	if err != nil {
		s.failStream(ac.log, st, err)
		return
	}
	switch msg := m.(type) {
	case *protocol.Hello:
		settle()
		s.serveControl(ctx, ac, st, r, msg)
	case *protocol.Batch:
		select {
		case <-ac.hello:
		case <-ctx.Done():
			return
		case <-s.draining:
			// Nothing of this stream was stored: the agent resends it.
			s.goAway(ac, st)
			return
		case <-time.After(30 * time.Second):
			s.failStream(ac.log, st, &protocol.DecodeError{Code: protocol.ErrCodeProtocol, Msg: "data stream opened before hello"})
			return
		}
		s.serveData(ctx, ac, st, r, msg)
	case *protocol.RenewRequest:
		settle()
		s.serveRenew(ctx, ac, st, msg)
	default:
		s.failStream(ac.log, st, &protocol.DecodeError{Code: protocol.ErrCodeProtocol, Msg: fmt.Sprintf("unexpected first message %T", m)})
	}
}

// failStream tells the peer why, then closes the stream with the error's code.
func (s *Server) failStream(log *slog.Logger, st *quic.Stream, err error) {
	if errors.Is(err, io.EOF) || isConnGone(err) {
		log.Debug("stream ended", "err", err)
		st.Close()
		return
	}
	code := protocol.CodeOf(err)
	log.Warn("closing stream", "code", code, "err", err)
	_ = st.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = protocol.WriteMessage(st, &protocol.Error{Code: code, Message: err.Error()})
	st.CancelRead(quic.StreamErrorCode(code))
	st.Close()
}

func (s *Server) serveControl(ctx context.Context, ac *agentConn, st *quic.Stream, r io.Reader, h *protocol.Hello) {
	if !ac.claimed.CompareAndSwap(false, true) {
		s.failStream(ac.log, st, &protocol.DecodeError{Code: protocol.ErrCodeProtocol, Msg: "second control stream"})
		return
	}
	if h.AgentID != ac.agentID {
		s.failStream(ac.log, st, &protocol.DecodeError{Code: protocol.ErrCodeForbidden, Msg: fmt.Sprintf("hello names agent %q but the certificate is for %q", h.AgentID, ac.agentID)})
		return
	}
	if h.MinVersion > protocol.Version || h.MaxVersion < protocol.Version {
		s.failStream(ac.log, st, &protocol.DecodeError{Code: protocol.ErrCodeUnsupported, Msg: fmt.Sprintf("agent speaks versions %d..%d, aggregator speaks %d", h.MinVersion, h.MaxVersion, protocol.Version)})
		return
	}
	// A hello made with the current certificate retires the one the agent
	// renewed with, if any: from now on it is refused as superseded.
	if err := s.store.AgentConnectedEvery(ctx, ac.agentID, h.AgentVersion, ac.conn.RemoteAddr().String(), h.Epoch, ac.serial, s.cfg.HeartbeatInterval); err != nil {
		ac.log.Warn("registry update failed", "err", err)
	}
	w := &protocol.Welcome{
		Version:           protocol.Version,
		AgentID:           ac.agentID,
		Site:              ac.site,
		HeartbeatInterval: s.cfg.HeartbeatInterval,
		MaxInFlight:       s.cfg.MaxInFlight,
		ServerTime:        time.Now().UnixMilli(),
		Collection:        s.welcomeCollection(ctx, ac),
	}
	if err := protocol.WriteMessage(st, w); err != nil {
		ac.log.Warn("write welcome", "err", err)
		return
	}
	close(ac.hello)
	ac.log.Info("agent connected", "version", h.AgentVersion, "remote", ac.conn.RemoteAddr().String(), "epoch", h.Epoch)

	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.draining:
				// At once, so that the agent stops sending new batches; it
				// reads the acks still due on its data streams and hangs up
				// (see drainConn).
				if err := protocol.WriteMessage(st, &protocol.Error{Code: protocol.ErrCodeGoingAway, Message: "aggregator shutting down"}); err != nil {
					ac.log.Debug("write going-away", "err", err)
				}
				return
			case cmd := <-ac.commands:
				if err := protocol.WriteMessage(st, &cmd); err != nil {
					ac.log.Warn("send command", "command", cmd.Name, "err", err)
					return
				}
			}
		}
	}()
	for {
		m, err := protocol.ReadMessage(r)
		if err != nil {
			if ctx.Err() == nil {
				s.failStream(ac.log, st, err)
			}
			return
		}
		hb, ok := m.(*protocol.Heartbeat)
		if !ok {
			s.failStream(ac.log, st, &protocol.DecodeError{Code: protocol.ErrCodeProtocol, Msg: fmt.Sprintf("unexpected %T on the control stream", m)})
			return
		}
		revoked, err := s.store.AgentHeartbeatEvery(ctx, ac.agentID, hb, s.cfg.HeartbeatInterval)
		if err != nil {
			ac.log.Warn("registry update from a heartbeat failed", "err", err)
		}
		if revoked {
			// Revoked elsewhere (the CLI, another replica): this
			// connection ends within one heartbeat interval.
			ac.log.Warn("agent revoked; closing its connection")
			ac.conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeUnauthenticated), "agent revoked")
			return
		}
	}
}

// goAway ends a data stream at a drain, after its last ack: an Error
// frame with ErrCodeGoingAway, STOP_SENDING with that code (the agent's
// writes fail at once), and the end of our side.
func (s *Server) goAway(ac *agentConn, st *quic.Stream) {
	st.CancelRead(quic.StreamErrorCode(protocol.ErrCodeGoingAway))
	err := protocol.WriteMessage(st, &protocol.Error{Code: protocol.ErrCodeGoingAway,
		Message: "aggregator shutting down: every batch it read on this stream is acknowledged; send the others again after reconnecting"})
	if err != nil {
		ac.log.Debug("write going-away", "err", err)
	}
	st.Close()
}

// serveData reads and decodes batches into a small bounded queue and stores
// them one at a time, acknowledging each after commit, in arrival order.
// Decoding in the reader overlaps it with the previous batch's commit.
//
// At a drain the reader stops (STOP_SENDING discards what was not read),
// the batches already read are stored and acknowledged, then goAway.
func (s *Server) serveData(ctx context.Context, ac *agentConn, st *quic.Stream, r io.Reader, first *protocol.Batch) {
	ac.hadData.Store(true)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.draining:
			st.CancelRead(quic.StreamErrorCode(protocol.ErrCodeGoingAway)) // unblocks the reader
		case <-ctx.Done():
		}
	}()
	queue := make(chan decoded, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(queue)
		b := first
		for {
			select {
			case queue <- s.decode(ac, b):
			case <-ctx.Done():
				return
			}
			m, err := protocol.ReadMessage(r)
			if err != nil {
				readErr <- err
				return
			}
			var ok bool
			if b, ok = m.(*protocol.Batch); !ok {
				readErr <- &protocol.DecodeError{Code: protocol.ErrCodeProtocol, Msg: fmt.Sprintf("unexpected %T on a data stream", m)}
				return
			}
		}
	}()
	for d := range queue {
		ack := d.ack
		if d.write != nil {
			var err error
			if ack, err = s.store1(ctx, ac, d); err != nil {
				if ctx.Err() == nil {
					s.failStream(ac.log, st, err)
				}
				return
			}
			// Committed and new (a redelivery was published the first
			// time): hand the samples to the realtime hub, and the events
			// to the alert engine, before the ack.
			if ack.Status == protocol.AckStored {
				s.publishCommitted(ac, &d)
			}
		}
		if err := protocol.WriteMessage(st, &ack); err != nil {
			st.CancelRead(quic.StreamErrorCode(protocol.ErrCodeShutdown)) // unblock the reader
			return
		}
	}
	select {
	case err := <-readErr:
		if s.isDraining() {
			s.goAway(ac, st)
			return
		}
		s.failStream(ac.log, st, err)
	default:
	}
}

// decoded is a batch ready to store: either a write to run, or (write nil)
// the rejection ack to send instead.
type decoded struct {
	b     *protocol.Batch
	ack   protocol.Ack
	write func(context.Context) (store.Result, error)
	// samples is the payload of a samples batch, published once stored.
	samples *protocol.Samples
	// events is the payload of an events batch, published once stored.
	events *protocol.Events
}

// decode decompresses and decodes a batch's payload. A payload that cannot
// be decoded is answered with a rejection so the agent drops it rather than
// resending it forever.
func (s *Server) decode(ac *agentConn, b *protocol.Batch) decoded {
	sum := sha256.Sum256(b.Payload)
	meta := store.BatchMeta{AgentID: ac.agentID, Site: ac.site, Epoch: b.Epoch, Seq: b.Seq, Kind: b.Kind, Bytes: len(b.Payload), Digest: sum[:16]}
	d := decoded{b: b}
	var err error
	switch b.Kind {
	case protocol.KindSamples:
		var p *protocol.Samples
		if p, err = b.Samples(); err == nil {
			d.write = func(ctx context.Context) (store.Result, error) { return s.store.WriteSamples(ctx, meta, p) }
			d.samples = p
		}
	case protocol.KindInventory:
		var p *protocol.Inventory
		if p, err = b.Inventory(); err == nil {
			d.write = func(ctx context.Context) (store.Result, error) { return s.store.WriteInventory(ctx, meta, p) }
		}
	case protocol.KindEvents:
		var p *protocol.Events
		if p, err = b.Events(); err == nil {
			d.write = func(ctx context.Context) (store.Result, error) { return s.store.WriteEvents(ctx, meta, p) }
			d.events = p
		}
	case protocol.KindGap:
		var p *protocol.Gap
		if p, err = b.Gap(); err == nil {
			d.write = func(ctx context.Context) (store.Result, error) { return s.store.WriteGap(ctx, meta, p) }
		}
	default:
		err = &protocol.DecodeError{Code: protocol.ErrCodeUnsupported, Msg: fmt.Sprintf("batch kind %d", b.Kind)}
	}
	if err != nil {
		d.ack = s.rejected(ac, b, err)
	}
	return d
}

// store1 stores one decoded batch, retrying while the database is
// unavailable. It returns an error (and no ack) only when it gives up on a
// batch that may still be storable later: the agent will resend it.
func (s *Server) store1(ctx context.Context, ac *agentConn, d decoded) (protocol.Ack, error) {
	b := d.b
	ack := protocol.Ack{Epoch: b.Epoch, Seq: b.Seq}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		res, err := s.gated(ctx, d.write) // waits while paused for a restore (gate.go)
		if err == nil {
			if res.Duplicate {
				s.Stats.BatchesDuplicate.Add(1)
				ack.Status = protocol.AckDuplicate
			} else {
				s.Stats.BatchesStored.Add(1)
				s.Stats.SamplesStored.Add(int64(res.Samples))
				ack.Status = protocol.AckStored
			}
			if attempt > 1 {
				ac.log.Info("store recovered; batch committed", "epoch", b.Epoch, "seq", b.Seq, "attempts", attempt)
			}
			return ack, nil
		}
		var rej *store.RejectError
		if errors.As(err, &rej) {
			return s.rejected(ac, b, err), nil
		}
		if ctx.Err() != nil {
			return ack, ctx.Err()
		}
		transient := store.IsTransient(err)
		if !transient && attempt >= 3 {
			return ack, &protocol.DecodeError{Code: protocol.ErrCodeUnavailable, Msg: fmt.Sprintf("cannot store batch %d/%d: %v", b.Epoch, b.Seq, err)}
		}
		s.Stats.StoreRetries.Add(1)
		if attempt == 1 || attempt%20 == 0 {
			ac.log.Warn("cannot store batch; holding the ack and retrying", "epoch", b.Epoch, "seq", b.Seq, "attempt", attempt, "transient", transient, "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ack, ctx.Err()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Server) rejected(ac *agentConn, b *protocol.Batch, err error) protocol.Ack {
	s.Stats.BatchesRejected.Add(1)
	code := protocol.CodeOf(err)
	var rej *store.RejectError
	if errors.As(err, &rej) {
		code = rej.Code
	}
	ac.log.Warn("batch rejected", "epoch", b.Epoch, "seq", b.Seq, "kind", b.Kind, "code", code, "err", err)
	if code == protocol.ErrCodeSeqReuse {
		// Not a loss: the agent resends the batch under a new epoch.
		return protocol.Ack{Epoch: b.Epoch, Seq: b.Seq, Status: protocol.AckRejected, Code: code}
	}
	// The agent drops a rejected batch: record the loss where it can be
	// queried. A failure here is logged; the rejection stands.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	meta := store.BatchMeta{AgentID: ac.agentID, Site: ac.site, Epoch: b.Epoch, Seq: b.Seq, Kind: b.Kind, Bytes: len(b.Payload)}
	if rerr := s.store.RecordRejected(ctx, meta, b.First, b.Last, code, err.Error()); rerr != nil {
		ac.log.Error("could not record the rejected batch as a gap", "epoch", b.Epoch, "seq", b.Seq, "err", rerr)
	}
	return protocol.Ack{Epoch: b.Epoch, Seq: b.Seq, Status: protocol.AckRejected, Code: code}
}

// serveEnrollment serves a connection without a client certificate: one
// stream, one EnrollRequest, one answer.
func (s *Server) serveEnrollment(ctx context.Context, conn *quic.Conn) {
	log := s.log.With("remote", conn.RemoteAddr().String())
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := conn.AcceptStream(actx)
	if err != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.ErrCodeUnauthenticated), "client certificate required")
		return
	}
	// An unauthenticated peer gets the same 30 s for the whole exchange: a
	// stalled request must not pin the stream.
	defer func() {
		// Give the peer until the deadline to read our answer and hang up.
		select {
		case <-conn.Context().Done():
		case <-actx.Done():
		}
		conn.CloseWithError(0, "")
	}()
	if dl, ok := actx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	m, err := protocol.ReadMessage(st)
	if err != nil {
		s.failStream(log, st, err)
		return
	}
	req, ok := m.(*protocol.EnrollRequest)
	if !ok {
		s.Stats.StreamsRefused.Add(1)
		s.failStream(log, st, &protocol.DecodeError{Code: protocol.ErrCodeUnauthenticated, Msg: "client certificate required (only enrollment is possible without one)"})
		return
	}
	secret, _, err := protocol.ParseEnrollToken(req.Token)
	if err != nil {
		s.failStream(log, st, &protocol.DecodeError{Code: protocol.ErrCodeBadToken, Msg: err.Error()})
		return
	}
	var certDER []byte
	a, err := s.store.Enroll(actx, secret, req.Name, req.Version, func(id, site string) (string, time.Time, error) {
		der, serial, notAfter, err := s.ca.SignAgent(req.CSR, id, site, s.cfg.AgentCertLifetime)
		certDER = der
		return serial, notAfter, err
	})
	if err != nil {
		var rej *store.RejectError
		var csrErr *pki.CSRError
		switch {
		case errors.As(err, &rej):
			s.failStream(log, st, &protocol.DecodeError{Code: rej.Code, Msg: rej.Msg})
		case errors.As(err, &csrErr):
			s.failStream(log, st, &protocol.DecodeError{Code: protocol.ErrCodeMalformed, Msg: "enroll request: " + csrErr.Error()})
		default:
			// The cause goes to our log, not to a peer without a certificate.
			log.Error("enrollment failed", "err", err)
			s.failStream(log, st, &protocol.DecodeError{Code: protocol.ErrCodeInternal, Msg: "enrollment failed; see the aggregator's log"})
		}
		return
	}
	log.Info("agent enrolled", "agent", a.ID, "site", a.Site, "name", req.Name)
	if err := protocol.WriteMessage(st, &protocol.EnrollResponse{AgentID: a.ID, Site: a.Site, Cert: certDER, CACert: s.ca.Cert.Raw}); err != nil {
		log.Warn("write enroll response", "err", err)
	}
	st.Close()
}

// serveRenew answers a RenewRequest on an authenticated connection: it
// signs the CSR for the agent and site of the connection's certificate (the
// CSR's subject is ignored) and returns the new certificate. The
// certificate the connection was opened with stays valid beside the new one
// until the agent says hello with the new one (store.RenewAgentCert).
func (s *Server) serveRenew(ctx context.Context, ac *agentConn, st *quic.Stream, req *protocol.RenewRequest) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	var certDER []byte
	a, err := s.store.RenewAgentCert(ctx, ac.agentID, ac.serial, func(id, site string) (string, time.Time, error) {
		der, serial, notAfter, err := s.ca.SignAgent(req.CSR, id, site, s.cfg.AgentCertLifetime)
		certDER = der
		return serial, notAfter, err
	})
	if err != nil {
		var rej *store.RejectError
		var csrErr *pki.CSRError
		switch {
		case errors.As(err, &rej):
			err = &protocol.DecodeError{Code: rej.Code, Msg: "renew request: " + rej.Msg}
		case errors.As(err, &csrErr):
			err = &protocol.DecodeError{Code: protocol.ErrCodeMalformed, Msg: "renew request: " + csrErr.Error()}
		case store.IsTransient(err):
			ac.log.Warn("certificate renewal failed", "err", err)
			err = &protocol.DecodeError{Code: protocol.ErrCodeUnavailable, Msg: "renew request: the aggregator cannot renew certificates now; retry later"}
		default:
			ac.log.Error("certificate renewal failed", "err", err)
			err = &protocol.DecodeError{Code: protocol.ErrCodeInternal, Msg: "renew request: renewal failed; see the aggregator's log"}
		}
		s.failStream(ac.log, st, err)
		return
	}
	ac.log.Info("agent certificate renewed", "old_serial", ac.serial, "new_serial", a.CertSerial, "not_after", a.CertNotAfter.Format(time.RFC3339))
	if err := protocol.WriteMessage(st, &protocol.RenewResponse{Cert: certDER, CACert: s.ca.Cert.Raw}); err != nil {
		// The agent keeps using the certificate it has, still accepted, and
		// asks again.
		ac.log.Warn("write renew response", "err", err)
		st.CancelRead(quic.StreamErrorCode(protocol.ErrCodeShutdown))
	}
	st.Close()
}

// isConnGone reports errors that mean the peer or the connection went away,
// which is normal and not worth a warning.
func isConnGone(err error) bool {
	var (
		appErr    *quic.ApplicationError
		idleErr   *quic.IdleTimeoutError
		resetErr  *quic.StatelessResetError
		streamErr *quic.StreamError
	)
	return errors.As(err, &appErr) || errors.As(err, &idleErr) || errors.As(err, &resetErr) || errors.As(err, &streamErr)
}
