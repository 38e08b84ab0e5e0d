package protocol

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestHeartbeatPluginsChecked: the plugin list of a heartbeat is bounded
// and its required fields are checked on both sides, with errors naming
// the field.
func TestHeartbeatPluginsChecked(t *testing.T) {
	ok := PluginStatus{Name: "promexec", State: "running"}
	many := make([]PluginStatus, MaxPlugins+1)
	for i := range many {
		many[i] = ok
	}
	for _, tc := range []struct {
		name    string
		plugins []PluginStatus
		code    ErrorCode
		msg     string
	}{
		{"no name", []PluginStatus{{State: "running"}}, ErrCodeMalformed, "plugins[0]: missing name"},
		{"no state", []PluginStatus{ok, {Name: "x"}}, ErrCodeMalformed, "plugins[1]: missing state"},
		{"long error", []PluginStatus{{Name: "x", State: "running", LastError: strings.Repeat("e", MaxPluginErrorBytes+1)}}, ErrCodeTooLarge, "last_error of 1025 bytes"},
		{"negative", []PluginStatus{{Name: "x", State: "running", Restarts: -1}}, ErrCodeMalformed, "negative restarts"},
		{"too many", many, ErrCodeTooLarge, "257 plugins exceed 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteMessage(&bytes.Buffer{}, &Heartbeat{Plugins: tc.plugins})
			if err == nil || CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("WriteMessage: %v; want code %v and %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestHeartbeatWithoutPluginsIsCompatible: a heartbeat from an agent that
// predates the plugins field decodes with none, and one without plugins
// does not carry the field at all.
func TestHeartbeatWithoutPluginsIsCompatible(t *testing.T) {
	old := []byte(`{"spool_depth":1,"spool_bytes":2,"oldest_unsent_ms":0,"collection_lag_ms":0,"dropped_batches":0,"sent_at":5}`)
	in := append([]byte{byte(MsgHeartbeat), 0, 0, 0, byte(len(old))}, old...)
	m, err := ReadMessage(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if hb := m.(*Heartbeat); hb.Plugins != nil || hb.SpoolDepth != 1 {
		t.Errorf("got %+v", hb)
	}
	var b bytes.Buffer
	if err := WriteMessage(&b, &Heartbeat{SentAt: 1}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Bytes(), []byte("plugins")) {
		t.Errorf("a heartbeat without plugins carries the field: %s", b.Bytes()[FrameHeaderLen:])
	}
}

// TestHeartbeatVCentersChecked: the endpoint reachability list is bounded
// and checked on both sides, with errors naming the field.
func TestHeartbeatVCentersChecked(t *testing.T) {
	many := make([]VCenterStatus, MaxVCenters+1)
	for i := range many {
		many[i] = VCenterStatus{Source: "vc1", Reachable: true}
	}
	for _, tc := range []struct {
		name string
		vcs  []VCenterStatus
		code ErrorCode
		msg  string
	}{
		{"no source", []VCenterStatus{{Reachable: true}}, ErrCodeMalformed, "vcenters[0]: missing source"},
		{"long error", []VCenterStatus{{Source: "vc1", LastError: strings.Repeat("e", MaxPluginErrorBytes+1)}}, ErrCodeTooLarge, "last_error of 1025 bytes"},
		{"negative", []VCenterStatus{{Source: "vc1", Since: -1}}, ErrCodeMalformed, "negative since"},
		{"too many", many, ErrCodeTooLarge, "257 vcenters exceed 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteMessage(&bytes.Buffer{}, &Heartbeat{VCenters: tc.vcs})
			if err == nil || CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("WriteMessage: %v; want code %v and %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestCollectionSettingsChecked: pushed collection settings are bounded on
// both sides, in the Welcome and in the apply_collection command.
func TestCollectionSettingsChecked(t *testing.T) {
	many := map[string][]string{}
	for i := range MaxCollectionKinds + 1 {
		many[strings.Repeat("k", i+1)] = []string{"cpu.usage.average"}
	}
	for _, tc := range []struct {
		name string
		msg  any
		code ErrorCode
		want string
	}{
		{"command without settings", &Command{Name: CommandApplyCollection}, ErrCodeMalformed, "apply_collection without collection"},
		{"negative interval", &Welcome{Version: 1, Collection: &CollectionSettings{RealtimeInterval: -1}}, ErrCodeMalformed, "welcome: collection: realtime_interval"},
		{"interval too long", &Command{Name: CommandApplyCollection, Collection: &CollectionSettings{EventsPoll: 25 * time.Hour}}, ErrCodeMalformed, "events_poll 25h0m0s outside"},
		{"too many kinds", &Command{Name: CommandApplyCollection, Collection: &CollectionSettings{Counters: many}}, ErrCodeTooLarge, "17 entity kinds exceed 16"},
		{"empty counter", &Welcome{Version: 1, Collection: &CollectionSettings{Counters: map[string][]string{"vm": {""}}}}, ErrCodeMalformed, "missing counter"},
		{"negative revision", &Welcome{Version: 1, Collection: &CollectionSettings{Revision: -2}}, ErrCodeMalformed, "negative revision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteMessage(&bytes.Buffer{}, tc.msg)
			if err == nil || CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WriteMessage: %v; want code %v and %q", err, tc.code, tc.want)
			}
		})
	}
}
