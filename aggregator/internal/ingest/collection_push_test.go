package ingest_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/collection"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestCollectionPushWithoutNotification: collection settings written
// without the announcement (as if the replica's listening connection had
// been down at the time) reach a connected agent at the replica's next
// periodic check; a stored document the protocol would refuse is never
// sent, and the next valid one is.
func TestCollectionPushWithoutNotification(t *testing.T) {
	h := newHarness(t, "", nil)
	h.stop()
	h.cfg.HeartbeatInterval = 300 * time.Millisecond
	h.cfg.Cluster = &ingest.Cluster{Pool: h.st.Pool(), Registry: h.st, ReplicaID: "replica-a", Version: "test"}
	h.start(nil)
	id := h.enroll("s1")
	c := h.dial(id, 1)
	if c.Welcome.Collection != nil {
		t.Fatalf("welcome carries %+v before any setting", c.Welcome.Collection)
	}
	ctx := context.Background()
	write := func(doc string) {
		t.Helper()
		if _, err := h.st.Pool().Exec(ctx, `INSERT INTO settings (key, value) VALUES ('collection', $1)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = settings.version + 1`, doc); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"realtime_interval":"1m0s","counters":{"host":["cpu.usage.average"]}}`)
	got := nextCollection(t, c, 3*time.Second)
	if got == nil || got.Revision != 1 || got.RealtimeInterval != time.Minute || len(got.Counters["host"]) != 1 {
		t.Fatalf("first push: %+v", got)
	}

	write(`{"realtime_interval":"banana"}`)
	if got := nextCollection(t, c, time.Second); got != nil {
		t.Fatalf("an invalid stored document was sent: %+v", got)
	}
	write(`{"tag_interval":"10m0s"}`)
	got = nextCollection(t, c, 3*time.Second)
	if got == nil || got.Revision != 3 || got.TagInterval != 10*time.Minute || got.RealtimeInterval != 0 {
		t.Fatalf("after the invalid one: %+v", got)
	}

	// A new connection is welcomed with revision 3, and not sent it again.
	c.Close()
	c2 := h.dial(id, 1)
	if w := c2.Welcome.Collection; w == nil || w.Revision != 3 {
		t.Fatalf("welcome: %+v", w)
	}
	if got := nextCollection(t, c2, time.Second); got != nil {
		t.Fatalf("sent again after the welcome: %+v", got)
	}
}

// nextCollection reads the next apply_collection command within d; nil
// if none came.
func nextCollection(t *testing.T, c *ingesttest.Conn, d time.Duration) *protocol.CollectionSettings {
	t.Helper()
	_ = c.Control.SetReadDeadline(time.Now().Add(d))
	m, err := protocol.ReadMessage(c.Control)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err != nil {
		t.Fatalf("control stream: %v", err)
	}
	cmd, ok := m.(*protocol.Command)
	if !ok || cmd.Name != protocol.CommandApplyCollection {
		t.Fatalf("got %#v, want apply_collection", m)
	}
	return cmd.Collection
}

// TestCollectionRevisionSurvivesRewind: the revision Write gives is the
// change's time in Unix ms and at least one more than the stored one, so
// a change after a restore that brought back an older row (a lower
// revision) still reaches agents, which ignore older revisions.
func TestCollectionRevisionSurvivesRewind(t *testing.T) {
	h := newHarness(t, "", nil)
	ctx := context.Background()
	write := func(d collection.Doc) int64 {
		t.Helper()
		var rev int64
		if err := pgx.BeginFunc(ctx, h.st.Pool(), func(tx pgx.Tx) error {
			var err error
			rev, err = collection.Write(ctx, tx, d, "test")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return rev
	}
	rev1 := write(collection.Doc{RealtimeInterval: "40s"})
	if now := time.Now().UnixMilli(); rev1 < now-60_000 || rev1 > now+60_000 {
		t.Errorf("revision %d, want about now in Unix ms (%d)", rev1, now)
	}
	// A revision from the future (a clock that was ahead): the next is one more.
	if _, err := h.st.Pool().Exec(ctx, `UPDATE settings SET version = $1 WHERE key = 'collection'`, rev1+3_600_000); err != nil {
		t.Fatal(err)
	}
	if rev := write(collection.Doc{RealtimeInterval: "60s"}); rev != rev1+3_600_001 {
		t.Errorf("after a revision ahead of the clock: %d, want %d", rev, rev1+3_600_001)
	}
	// A restore brought back an old row.
	if _, err := h.st.Pool().Exec(ctx, `UPDATE settings SET version = 3 WHERE key = 'collection'`); err != nil {
		t.Fatal(err)
	}
	if rev := write(collection.Doc{RealtimeInterval: "80s"}); rev <= rev1 {
		t.Errorf("after a rewind to 3: revision %d, not above %d", rev, rev1)
	}
	cur, err := collection.Current(ctx, h.st.Pool())
	if err != nil || cur == nil || cur.RealtimeInterval != 80*time.Second {
		t.Fatalf("current: %+v, %v", cur, err)
	}
}
