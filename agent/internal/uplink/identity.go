package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/protocol"
)

// Identity is an enrolled agent's credentials, kept in its data directory:
// agent.key (0600), agent.crt, ca.crt and agent.json.
type Identity struct {
	AgentID string `json:"agent_id"`
	Site    string `json:"site"`
	Cert    tls.Certificate
	CAs     *x509.CertPool
}

// ErrNotEnrolled means the data directory holds no identity yet.
var ErrNotEnrolled = errors.New("uplink: agent not enrolled (no identity in the data directory)")

// LoadIdentity reads the identity from dir.
func LoadIdentity(dir string) (*Identity, error) {
	meta, err := os.ReadFile(filepath.Join(dir, "agent.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("uplink: identity: %w", err)
	}
	id := &Identity{}
	if err := json.Unmarshal(meta, id); err != nil {
		return nil, fmt.Errorf("uplink: identity %s: %w", filepath.Join(dir, "agent.json"), err)
	}
	id.Cert, err = tls.LoadX509KeyPair(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	if err != nil {
		return nil, fmt.Errorf("uplink: identity: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("uplink: identity: %w", err)
	}
	id.CAs = x509.NewCertPool()
	if !id.CAs.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("uplink: identity: %s holds no certificate", filepath.Join(dir, "ca.crt"))
	}
	return id, nil
}

// Enroll redeems a single-use token with the aggregator at addr and stores
// the resulting identity in dir. The token pins the aggregator's CA, so this
// first connection is authenticated too. Refusals come back as
// *protocol.Error (unknown, used or expired token).
func Enroll(ctx context.Context, addr, token, name, version, dir string) (*Identity, error) {
	_, pin, err := protocol.ParseEnrollToken(token)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("uplink: key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("uplink: csr: %w", err)
	}
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{protocol.ALPN},
		InsecureSkipVerify:    true, // replaced by the CA pin below
		VerifyPeerCertificate: protocol.VerifyPinnedCA(pin),
	}, quicConfig())
	if err != nil {
		return nil, fmt.Errorf("uplink: enroll: dial %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("uplink: enroll: %w", err)
	}
	if err := protocol.WriteMessage(st, &protocol.EnrollRequest{Token: token, CSR: csr, Name: name, Version: version}); err != nil {
		return nil, fmt.Errorf("uplink: enroll: %w", err)
	}
	m, err := protocol.ReadMessage(st)
	if err != nil {
		return nil, fmt.Errorf("uplink: enroll: read answer: %w", err)
	}
	var resp *protocol.EnrollResponse
	switch r := m.(type) {
	case *protocol.Error:
		return nil, fmt.Errorf("uplink: enrollment refused: %w", r)
	case *protocol.EnrollResponse:
		resp = r
	default:
		return nil, fmt.Errorf("uplink: enroll: unexpected %T", m)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uplink: identity dir: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("uplink: key: %w", err)
	}
	meta, _ := json.Marshal(Identity{AgentID: resp.AgentID, Site: resp.Site})
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"agent.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600},
		{"agent.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.Cert}), 0o644},
		{"ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.CACert}), 0o644},
		{"agent.json", meta, 0o644}, // last: its presence means "enrolled"
	}
	// The token is spent now: the identity must survive a power loss, so
	// each file is synced before it is renamed into place, and the
	// directory after.
	for _, f := range files {
		if err := writeDurably(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return LoadIdentity(dir)
}

func quicConfig() *quic.Config {
	return &quic.Config{
		// A 5 s keepalive against a 20 s idle timeout notices a vanished
		// aggregator within ~20 s; a restarted one resets us at once.
		KeepAlivePeriod:            5 * time.Second,
		MaxIdleTimeout:             20 * time.Second,
		MaxStreamReceiveWindow:     8 << 20,
		MaxConnectionReceiveWindow: 32 << 20,
	}
}

func writeDurably(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("uplink: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	return nil
}
