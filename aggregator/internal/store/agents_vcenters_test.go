package store_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestHeartbeatSpoolQuotaAndVCenters: the heartbeat's spool quota and
// endpoint reachability are stored and read back; NUL bytes, invalid
// UTF-8 and over-long error texts are cleaned rather than failing the
// heartbeat; a later heartbeat without them (an older agent) clears them.
func TestHeartbeatSpoolQuotaAndVCenters(t *testing.T) {
	ctx := store.AllSites(context.Background())
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	ag, err := st.Enroll(ctx, secret, "a1", "1.0", (&serials{}).sign)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AgentConnected(ctx, ag.ID, "1.0", "127.0.0.1:1", 1, ag.CertSerial); err != nil {
		t.Fatal(err)
	}
	got, err := st.AgentByID(ctx, ag.ID)
	if err != nil || got.SpoolMaxBytes != 0 || got.VCenters == nil || len(got.VCenters) != 0 {
		t.Fatalf("before any heartbeat: %+v, %v", got, err)
	}
	since := time.Now().Add(-time.Minute).UnixMilli()
	hostile := "dial tcp\x00 10.0.0.1:443: \xff\xfe timeout " + strings.Repeat("é", 2*protocol.MaxPluginErrorBytes)
	hb := &protocol.Heartbeat{SpoolBytes: 900, SpoolMaxBytes: 1000, VCenters: []protocol.VCenterStatus{
		{Source: "vc-a", Reachable: true, Since: since - 1000, LastOK: since},
		{Source: "vc-\x00b\xc3", Reachable: false, Since: since, LastOK: since - 5000, LastError: hostile},
	}}
	if revoked, err := st.AgentHeartbeat(ctx, ag.ID, hb); err != nil || revoked {
		t.Fatalf("heartbeat: %v %v", revoked, err)
	}
	got, err = st.AgentByID(ctx, ag.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SpoolMaxBytes != 1000 || got.SpoolBytes != 900 || len(got.VCenters) != 2 {
		t.Fatalf("after the heartbeat: %+v", got)
	}
	a, b := got.VCenters[0], got.VCenters[1]
	if a != (protocol.VCenterStatus{Source: "vc-a", Reachable: true, Since: since - 1000, LastOK: since}) {
		t.Errorf("reachable endpoint: %+v", a)
	}
	if b.Reachable || b.Since != since || b.Source != "vc-\uFFFDb\uFFFD" || !utf8.ValidString(b.LastError) || strings.ContainsRune(b.LastError, 0) ||
		len(b.LastError) > protocol.MaxPluginErrorBytes || !strings.HasPrefix(b.LastError, "dial tcp\uFFFD 10.0.0.1:443: \uFFFD") {
		t.Errorf("unreachable endpoint: %+v (error %d bytes)", b, len(b.LastError))
	}
	// The list is capped, the quota clamped to a bigint.
	hb = &protocol.Heartbeat{SpoolMaxBytes: math.MaxUint64}
	for i := 0; i < protocol.MaxVCenters+10; i++ {
		hb.VCenters = append(hb.VCenters, protocol.VCenterStatus{Source: "vc", Reachable: true})
	}
	if _, err := st.AgentHeartbeat(ctx, ag.ID, hb); err != nil {
		t.Fatal(err)
	}
	if got, _ = st.AgentByID(ctx, ag.ID); got.SpoolMaxBytes != math.MaxInt64 || len(got.VCenters) != protocol.MaxVCenters {
		t.Errorf("capped: quota %d, %d endpoints", got.SpoolMaxBytes, len(got.VCenters))
	}
	// An older agent reports neither.
	if _, err := st.AgentHeartbeat(ctx, ag.ID, &protocol.Heartbeat{SpoolBytes: 1}); err != nil {
		t.Fatal(err)
	}
	if got, _ = st.AgentByID(ctx, ag.ID); got.SpoolMaxBytes != 0 || len(got.VCenters) != 0 {
		t.Errorf("after an old agent's heartbeat: %+v", got)
	}
}
