package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestApplyCollectionOrderAndLog: pushed settings are taken in order of
// revision (an older one is ignored, the same one is not applied twice),
// what changes is logged against the agent's own configuration, and a
// zero field returns to agent.yml's value.
func TestApplyCollectionOrderAndLog(t *testing.T) {
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.Collection.Counters = map[string][]string{"host": {"cpu.usage.average"}}
	a := &Agent{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil))}
	a.coll.init()

	a.applyCollection(&protocol.CollectionSettings{Revision: 2, RealtimeInterval: 40 * time.Second,
		Counters: map[string][]string{"host": {"cpu.usage.average", "mem.usage.average"}}}, "welcome")
	if a.CollectionRevision() != 2 {
		t.Fatalf("revision %d after the welcome's 2", a.CollectionRevision())
	}
	for _, want := range []string{"from=welcome", "revision=2", "realtime_interval 20s → 40s", "counters.host +mem.usage.average"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	a.applyCollection(&protocol.CollectionSettings{Revision: 1, RealtimeInterval: 60 * time.Second}, "command")
	if a.CollectionRevision() != 2 || !strings.Contains(logs.String(), "older revision ignored") {
		t.Errorf("revision 1 after 2: applied %d\n%s", a.CollectionRevision(), logs.String())
	}
	n := strings.Count(logs.String(), "collection settings from the aggregator")
	a.applyCollection(&protocol.CollectionSettings{Revision: 2, RealtimeInterval: 40 * time.Second}, "command")
	if got := strings.Count(logs.String(), "collection settings from the aggregator"); got != n {
		t.Errorf("the same revision was taken again")
	}

	// Revision 3 leaves everything to agent.yml again.
	a.applyCollection(&protocol.CollectionSettings{Revision: 3}, "command")
	for _, want := range []string{"revision=3", "realtime_interval 40s → 20s", "counters.host -mem.usage.average"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	durs, counters := a.effectiveCollection(a.coll.applied)
	if durs["realtime_interval"] != 20*time.Second || len(counters["host"]) != 1 || len(counters["vm"]) == 0 {
		t.Errorf("effective after revision 3: %v %v", durs, counters)
	}
	select {
	case <-a.coll.changed:
	default:
		t.Error("the applier was not woken")
	}
}
