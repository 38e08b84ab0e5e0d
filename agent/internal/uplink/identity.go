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
//
//	agent.pem   0600  the private key and the client certificate, together
//	ca.crt      0644  the aggregator's CA
//	agent.json  0644  agent ID and site; written last, its presence means "enrolled"
//
// Key and certificate share one file so that replacing them on renewal is a
// single atomic rename: a crash at any point leaves either the old pair or
// the new one. Directories enrolled before renewal existed hold agent.key
// and agent.crt instead; they load as before and move to agent.pem at the
// first renewal.
type Identity struct {
	AgentID string `json:"agent_id"`
	Site    string `json:"site"`
	// Cert is the client certificate with its key; Cert.Leaf is parsed.
	Cert tls.Certificate `json:"-"`
	CAs  *x509.CertPool  `json:"-"`

	dir string // where it is kept
}

// Identity files in the data directory.
const (
	pairFile   = "agent.pem"
	caFile     = "ca.crt"
	metaFile   = "agent.json"
	legacyCert = "agent.crt" // before agent.pem
	legacyKey  = "agent.key"
)

// ErrNotEnrolled means the data directory holds no identity yet.
var ErrNotEnrolled = errors.New("uplink: agent not enrolled (no identity in the data directory)")

// LoadIdentity reads the identity from dir.
func LoadIdentity(dir string) (*Identity, error) {
	meta, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("uplink: identity: %w", err)
	}
	id := &Identity{dir: dir}
	if err := json.Unmarshal(meta, id); err != nil {
		return nil, fmt.Errorf("uplink: identity %s: %w", filepath.Join(dir, metaFile), err)
	}
	pair, err := os.ReadFile(filepath.Join(dir, pairFile))
	switch {
	case err == nil:
		id.Cert, err = tls.X509KeyPair(pair, pair)
		if err != nil {
			err = fmt.Errorf("%s: %w", filepath.Join(dir, pairFile), err)
		}
	case errors.Is(err, os.ErrNotExist):
		id.Cert, err = tls.LoadX509KeyPair(filepath.Join(dir, legacyCert), filepath.Join(dir, legacyKey))
	}
	if err != nil {
		return nil, fmt.Errorf("uplink: identity: %w", err)
	}
	if id.Cert.Leaf, err = x509.ParseCertificate(id.Cert.Certificate[0]); err != nil {
		return nil, fmt.Errorf("uplink: identity: certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("uplink: identity: %w", err)
	}
	id.CAs = x509.NewCertPool()
	if !id.CAs.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("uplink: identity: %s holds no certificate", filepath.Join(dir, caFile))
	}
	return id, nil
}

// RenewAt is when the certificate should be renewed: at two thirds of its
// validity period, which leaves a third of it (four months of the default
// year) for retries.
func (id *Identity) RenewAt() time.Time {
	l := id.Cert.Leaf
	return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)
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
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, err
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
	pair, err := encodePair(key, resp.Cert)
	if err != nil {
		return nil, err
	}
	meta, _ := json.Marshal(Identity{AgentID: resp.AgentID, Site: resp.Site})
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{pairFile, pair, 0o600},
		{caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.CACert}), 0o644},
		{metaFile, meta, 0o644}, // last: its presence means "enrolled"
	}
	// The token is spent now: the identity must survive a power loss, so
	// each file is synced before it is renamed into place, and the
	// directory after.
	for _, f := range files {
		if err := writeDurably(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	syncDir(dir)
	return LoadIdentity(dir)
}

// newKeyAndCSR makes the key pair of a new certificate, at enrollment and at
// every renewal, and the CSR that carries its public key. The CSR has no
// subject: the aggregator decides the identity.
func newKeyAndCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("uplink: key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("uplink: csr: %w", err)
	}
	return key, csr, nil
}

// encodePair is the content of agent.pem: the key, then the certificate.
func encodePair(key *ecdsa.PrivateKey, certDER []byte) ([]byte, error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("uplink: key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})...), nil
}

// renewed checks a certificate the aggregator issued on renewal for key:
// it must chain to the CA this identity already trusts (not to whatever CA
// the response names), be a client certificate, and carry this identity's
// agent ID and site. It then saves the new identity durably (see save) and
// returns it.
func (id *Identity) renewed(key *ecdsa.PrivateKey, certDER []byte) (*Identity, error) {
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.CAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	if leaf.Subject.CommonName != id.AgentID || len(leaf.Subject.OrganizationalUnit) != 1 || leaf.Subject.OrganizationalUnit[0] != id.Site {
		return nil, fmt.Errorf("renewed certificate is for %q of %q, not this agent (%s of %s)",
			leaf.Subject.CommonName, leaf.Subject.OrganizationalUnit, id.AgentID, id.Site)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("renewed certificate is not for the key this agent sent")
	}
	pair, err := encodePair(key, certDER)
	if err != nil {
		return nil, err
	}
	nid := &Identity{AgentID: id.AgentID, Site: id.Site, CAs: id.CAs, dir: id.dir,
		Cert: tls.Certificate{Certificate: [][]byte{certDER}, PrivateKey: key, Leaf: leaf}}
	if err := nid.save(pair); err != nil {
		return nil, err
	}
	return nid, nil
}

// save replaces the key and certificate on disk with pair in one atomic
// rename (see writeDurably), then removes the files of the layout that
// predates agent.pem, which LoadIdentity would otherwise fall back to.
func (id *Identity) save(pair []byte) error {
	if id.dir == "" {
		return errors.New("uplink: identity: no directory to save it in")
	}
	if err := writeDurably(filepath.Join(id.dir, pairFile), pair, 0o600); err != nil {
		return err
	}
	syncDir(id.dir)
	for _, name := range []string{legacyCert, legacyKey} {
		if err := os.Remove(filepath.Join(id.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("uplink: identity: remove the superseded %s: %w", name, err)
		}
	}
	return nil
}

func quicConfig() *quic.Config {
	return &quic.Config{
		// A 5 s keepalive against a 20 s idle timeout notices a vanished
		// aggregator within ~20 s; a restarted one resets us at once.
		KeepAlivePeriod: 5 * time.Second,
		MaxIdleTimeout:  20 * time.Second,
		// A dial to an unreachable aggregator gives up after 2 s of
		// silence (quic-go's default: 5 s), having sent its first packet
		// three times (0, 0.3, 0.9 s). Time spent dialing a dead
		// aggregator is time an agent connects the instant it is back,
		// so the shorter the dial, the better the backoff's jitter
		// spreads a fleet's reconnects (see backoff). Silence only: any
		// answer resets it, so a 1 s round trip still connects, and
		// the handshake's later steps are not bounded by it.
		HandshakeIdleTimeout:       handshakeIdleTimeout,
		MaxStreamReceiveWindow:     8 << 20,
		MaxConnectionReceiveWindow: 32 << 20,
	}
}

// writeDurably replaces path with data: written to path.tmp, synced, then
// renamed over path, so that path is always either its old content or the
// new one, whole. A leftover path.tmp from an interrupted write is ignored
// by readers and replaced by the next write. The caller syncs the directory
// (syncDir) to make the rename itself durable.
func writeDurably(path string, data []byte, mode os.FileMode) error {
	// A leftover from an interrupted write may have another mode.
	_ = os.Remove(path + ".tmp")
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

// syncDir makes renames in dir durable. It is best-effort: not every
// platform can sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
