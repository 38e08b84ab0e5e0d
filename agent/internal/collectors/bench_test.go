package collectors

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
	"github.com/vmpulse/vmpulse/protocol"
)

// BenchmarkPromexecCycle measures one collection of the shipped promexec
// plugin, as the agent runs it: its own process, a command printing a
// 10,000-sample exposition (100 families × 100 label values), parsed by
// the plugin, carried over go-plugin's gRPC, and turned into a spool
// payload (encoded and compressed as a batch).
func BenchmarkPromexecCycle(b *testing.B) {
	const families, values = 100, 100
	var sb strings.Builder
	for f := range families {
		fmt.Fprintf(&sb, "# TYPE sensor_%d_celsius gauge\n", f)
		for v := range values {
			fmt.Fprintf(&sb, "sensor_%d_celsius{slot=\"%d\"} %d.5\n", f, v, f+v)
		}
	}
	expo := filepath.Join(b.TempDir(), "big.prom")
	if err := os.WriteFile(expo, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bin := plugintest.Build(b, dir, "github.com/vmpulse/vmpulse/plugins/promexec")["promexec"]
	cfg, _ := json.Marshal(map[string]any{"command": []string{"cat", expo}})
	h := plugintest.Host(b, host.Config{Dir: dir, Plugins: map[string]host.PluginConfig{
		"promexec": {SHA256: bin.SHA256, Env: []string{sdk.EnvConfig + "=" + string(cfg)}}}})
	ctx := context.Background()
	if err := h.Start(ctx); err != nil {
		b.Fatal(err)
	}
	c, err := h.Collector("promexec")
	if err != nil {
		b.Fatal(err)
	}
	d, err := c.Describe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p := &proc{r: &Runtime{cfg: Config{Site: "dc1", AgentID: "a1"}}, cfg: Plugin{Name: "promexec"}, desc: map[string]sdk.Series{}}
	for _, s := range d.Series {
		p.desc[s.Name] = s
	}
	var n int
	b.ResetTimer()
	t0 := time.Now()
	for range b.N {
		samples, err := c.Collect(ctx, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		payload, _, rep := p.build(samples, time.Time{}, time.Now())
		if rep.kept != families*values {
			b.Fatalf("kept %d samples, want %d (%+v)", rep.kept, families*values, rep)
		}
		if _, err := protocol.NewBatch(protocol.KindSamples, protocol.CodecZstd, payload); err != nil {
			b.Fatal(err)
		}
		n += rep.kept
	}
	el := time.Since(t0)
	b.StopTimer()
	ms := float64(el.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/cycle")
	b.ReportMetric(float64(n)/el.Seconds(), "samples/s")
	fmt.Printf("figure: plugin_collect_cycle_ms %.1f ms (10,000 samples, promexec, parse + gRPC + payload)\n", ms)
	fmt.Printf("figure: plugin_collect_samples_per_s %.0f samples/s\n", float64(n)/el.Seconds())
}
