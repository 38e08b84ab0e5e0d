package uplink_test

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
)

// logBuffer keeps what the client logs, and shows it in the test log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// With a 9 s certificate lifetime the agent renews about 6 s after
// enrollment, over its connection, while batches keep coming: every batch
// is delivered, the new identity is on disk, and a restarted agent uses it.
func TestCertificateRenewsWhileDelivering(t *testing.T) {
	agg := newAggregator(t, "agent_cert_lifetime: 9s")
	logs := &logBuffer{t: t}
	a := newAgent(t, agg, spool.Options{}, uplink.Config{MaxBackoff: time.Second, Logger: logs.logger()})
	enrolled := a.client.Identity().Cert.Leaf
	if d := enrolled.NotAfter.Sub(enrolled.NotBefore); d > 12*time.Second {
		t.Fatalf("enrolled certificate valid for %s, want about 9s", d)
	}
	a.run()
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	appended := 0
	var renewed time.Time
	deadline := time.Now().Add(20 * time.Second)
	for renewed.IsZero() || time.Since(renewed) < time.Second {
		a.append(t, samplesBatch(t, 10, start.Add(time.Duration(appended)*time.Second), uint64(appended)))
		appended++
		time.Sleep(50 * time.Millisecond)
		if renewed.IsZero() && a.client.Stats.Renewals.Load() > 0 {
			renewed = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal within 20s of a certificate valid until %s", enrolled.NotAfter.Format(time.RFC3339))
		}
	}
	waitDrained(t, a, 20*time.Second)
	a.stop()

	st := &a.client.Stats
	if n := agg.count(`SELECT count(*) FROM ingest_ledger`); n != int64(appended) {
		t.Fatalf("ledger = %d batches, want %d", n, appended)
	}
	if n := agg.count(`SELECT count(*) FROM samples`); n != int64(appended*10) {
		t.Fatalf("rows = %d, want %d", n, appended*10)
	}
	if st.Failures.Load() != 0 || st.RenewalFailures.Load() != 0 || st.Connects.Load() < 2 {
		t.Fatalf("failures %d, renewal failures %d, connects %d: want a clean reconnect after the renewal",
			st.Failures.Load(), st.RenewalFailures.Load(), st.Connects.Load())
	}
	if !strings.Contains(logs.String(), "certificate renewed") || !strings.Contains(logs.String(), "not_after=") {
		t.Fatal(`no "certificate renewed" log with not_after`)
	}

	cur := a.client.Identity()
	if cur.Cert.Leaf.SerialNumber.Cmp(enrolled.SerialNumber) == 0 {
		t.Fatal("the client still uses the enrolled certificate")
	}
	if cur.Cert.Leaf.Subject.CommonName != cur.AgentID || !cur.Cert.Leaf.NotAfter.After(enrolled.NotAfter) {
		t.Fatalf("renewed certificate: CN %q (agent %s), not_after %s (enrolled one %s)",
			cur.Cert.Leaf.Subject.CommonName, cur.AgentID, cur.Cert.Leaf.NotAfter, enrolled.NotAfter)
	}
	disk, err := uplink.LoadIdentity(a.idDir)
	if err != nil {
		t.Fatal(err)
	}
	if disk.Cert.Leaf.SerialNumber.Cmp(cur.Cert.Leaf.SerialNumber) != 0 || disk.AgentID != cur.AgentID || disk.Site != cur.Site {
		t.Fatalf("identity on disk (serial %x) is not the one in use (serial %x)", disk.Cert.Leaf.SerialNumber, cur.Cert.Leaf.SerialNumber)
	}
	serial := disk.Cert.Leaf.SerialNumber.Text(16)
	if n := agg.count(`SELECT count(*) FROM agents WHERE id = $1 AND $2 IN (cert_serial, prev_cert_serial)`, disk.AgentID, serial); n != 1 {
		t.Fatal("the aggregator does not accept the saved certificate")
	}
	fi, err := os.Stat(filepath.Join(a.idDir, "agent.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent.pem: %v, mode %v; want 0600", err, fi.Mode())
	}

	// A restarted agent loads the renewed identity and delivers with it.
	a.client = uplink.New(uplink.Config{Addr: agg.addr, ServerName: "localhost", MaxBackoff: time.Second, Logger: logs.logger()}, disk, a.sp)
	a.run()
	a.append(t, samplesBatch(t, 10, start.Add(time.Duration(appended)*time.Second), uint64(appended)))
	waitDrained(t, a, 20*time.Second)
	a.stop()
	if n := agg.count(`SELECT count(*) FROM ingest_ledger`); n != int64(appended+1) {
		t.Fatalf("after the restart: ledger = %d batches, want %d", n, appended+1)
	}
	if a.client.Stats.Failures.Load() != 0 {
		t.Fatalf("the restarted agent failed to connect %d times", a.client.Stats.Failures.Load())
	}
}

// An agent that was offline until its certificate expired cannot renew:
// the log says when it expired and that it must be enrolled again.
func TestExpiredCertificateNeedsReenrollment(t *testing.T) {
	agg := newAggregator(t, "agent_cert_lifetime: 2s")
	logs := &logBuffer{t: t}
	a := newAgent(t, agg, spool.Options{}, uplink.Config{MaxBackoff: time.Second, Logger: logs.logger()})
	notAfter := a.client.Identity().Cert.Leaf.NotAfter
	time.Sleep(time.Until(notAfter) + 1100*time.Millisecond)
	a.run()
	want := "the agent certificate expired at " + notAfter.Format(time.RFC3339)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log containing %q", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.stop()
	if !strings.Contains(logs.String(), "re-enrolled with a new enrollment token") {
		t.Fatal("the log does not say the agent must be re-enrolled")
	}
	if n := a.client.Stats.Connects.Load(); n != 0 {
		t.Fatalf("connected %d times with an expired certificate", n)
	}
	// Nothing about the identity changed.
	if _, err := os.Stat(filepath.Join(a.idDir, "agent.pem.tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("agent.pem.tmp: %v", err)
	}
}
