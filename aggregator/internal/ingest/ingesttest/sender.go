// Package ingesttest is a minimal protocol sender for tests and benchmarks:
// enrollment, the control-stream handshake, and data streams with explicit
// send/receive so tests can reorder, duplicate and corrupt at will. The
// agent's uplink is the production client.
package ingesttest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/protocol"
)

// Identity is an enrolled agent's credentials.
type Identity struct {
	AgentID string
	Site    string
	Cert    tls.Certificate
	CAs     *x509.CertPool
}

// Enroll redeems token at addr and returns the new identity. A refusal is
// returned as a *protocol.Error.
func Enroll(ctx context.Context, addr, token, name string) (*Identity, error) {
	_, pin, err := protocol.ParseEnrollToken(token)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{protocol.ALPN},
		InsecureSkipVerify:    true, // replaced by the pin check below
		VerifyPeerCertificate: protocol.VerifyPinnedCA(pin),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("enroll: dial: %w", err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if err := protocol.WriteMessage(st, &protocol.EnrollRequest{Token: token, CSR: csr, Name: name, Version: "test"}); err != nil {
		return nil, err
	}
	m, err := protocol.ReadMessage(st)
	if err != nil {
		return nil, fmt.Errorf("enroll: read answer: %w", err)
	}
	switch r := m.(type) {
	case *protocol.Error:
		return nil, r
	case *protocol.EnrollResponse:
		ca, err := x509.ParseCertificate(r.CACert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		return &Identity{AgentID: r.AgentID, Site: r.Site, CAs: pool,
			Cert: tls.Certificate{Certificate: [][]byte{r.Cert}, PrivateKey: key}}, nil
	default:
		return nil, fmt.Errorf("enroll: unexpected %T", m)
	}
}

// Conn is an authenticated connection with its control stream open.
type Conn struct {
	QUIC    *quic.Conn
	Welcome *protocol.Welcome
	Control *quic.Stream
}

// Dial connects with id's certificate (nil id: no certificate) and performs
// the hello/welcome exchange.
func Dial(ctx context.Context, addr string, id *Identity, epoch uint64) (*Conn, error) {
	conn, err := DialRaw(ctx, addr, id)
	if err != nil {
		return nil, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, err
	}
	agentID := ""
	if id != nil {
		agentID = id.AgentID
	}
	if err := protocol.WriteMessage(st, &protocol.Hello{AgentID: agentID, AgentVersion: "test", MinVersion: 1, MaxVersion: protocol.Version, Epoch: epoch}); err != nil {
		conn.CloseWithError(0, "")
		return nil, err
	}
	m, err := protocol.ReadMessage(st)
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, fmt.Errorf("hello: %w", err)
	}
	w, ok := m.(*protocol.Welcome)
	if !ok {
		conn.CloseWithError(0, "")
		if e, ok := m.(*protocol.Error); ok {
			return nil, e
		}
		return nil, fmt.Errorf("hello: unexpected %T", m)
	}
	return &Conn{QUIC: conn, Welcome: w, Control: st}, nil
}

// DialRaw connects without any handshake on top of QUIC.
func DialRaw(ctx context.Context, addr string, id *Identity) (*quic.Conn, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, ServerName: "localhost"}
	if id != nil {
		tc.Certificates = []tls.Certificate{id.Cert}
		tc.RootCAs = id.CAs
	} else {
		tc.InsecureSkipVerify = true
	}
	return quic.DialAddr(ctx, addr, tc, &quic.Config{MaxIdleTimeout: 30e9})
}

// Close closes the connection.
func (c *Conn) Close() { c.QUIC.CloseWithError(0, "") }

// Stream is a data stream.
type Stream struct {
	st *quic.Stream
	r  *bufio.Reader
}

// OpenData opens a data stream.
func (c *Conn) OpenData(ctx context.Context) (*Stream, error) {
	st, err := c.QUIC.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return &Stream{st: st, r: bufio.NewReader(st)}, nil
}

// Send writes one batch.
func (s *Stream) Send(b *protocol.Batch) error { return protocol.WriteMessage(s.st, b) }

// WriteRaw writes raw bytes (for malformed-frame tests).
func (s *Stream) WriteRaw(p []byte) error { _, err := s.st.Write(p); return err }

// Recv reads the next ack. An Error message from the server is returned as
// a *protocol.Error.
func (s *Stream) Recv() (protocol.Ack, error) {
	m, err := protocol.ReadMessage(s.r)
	if err != nil {
		var se *quic.StreamError
		if errors.As(err, &se) || errors.Is(err, io.EOF) {
			return protocol.Ack{}, err
		}
		return protocol.Ack{}, err
	}
	switch r := m.(type) {
	case *protocol.Ack:
		return *r, nil
	case *protocol.Error:
		return protocol.Ack{}, r
	default:
		return protocol.Ack{}, fmt.Errorf("unexpected %T", m)
	}
}

// Close closes the sending side.
func (s *Stream) Close() error { return s.st.Close() }

// RenewCSR sends a RenewRequest carrying csr on a new stream of conn and
// returns the answer. A refusal is returned as a *protocol.Error.
func RenewCSR(ctx context.Context, conn *quic.Conn, csr []byte) (*protocol.RenewResponse, error) {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	defer st.CancelRead(0)
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := protocol.WriteMessage(st, &protocol.RenewRequest{CSR: csr}); err != nil {
		return nil, err
	}
	st.Close()
	m, err := protocol.ReadMessage(st)
	if err != nil {
		return nil, fmt.Errorf("renew: read answer: %w", err)
	}
	switch r := m.(type) {
	case *protocol.Error:
		return nil, r
	case *protocol.RenewResponse:
		return r, nil
	default:
		return nil, fmt.Errorf("renew: unexpected %T", m)
	}
}

// Renew renews id's certificate over conn for a new key and returns the
// new identity; id is unchanged.
func Renew(ctx context.Context, conn *quic.Conn, id *Identity) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	r, err := RenewCSR(ctx, conn, csr)
	if err != nil {
		return nil, err
	}
	return &Identity{AgentID: id.AgentID, Site: id.Site, CAs: id.CAs,
		Cert: tls.Certificate{Certificate: [][]byte{r.Cert}, PrivateKey: key}}, nil
}
