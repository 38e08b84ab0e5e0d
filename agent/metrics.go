package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmpulse/vmpulse/agent/internal/collectors"
	"github.com/vmpulse/vmpulse/agent/internal/metrics"
	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/agent/internal/vsphere"
)

// perfCollector is one endpoint's performance collector, for the metrics.
type perfCollector struct {
	endpoint string
	perf     *vsphere.Collector
}

// metricsSource adapts the agent to metrics.Source.
type metricsSource struct{ a *Agent }

func (s metricsSource) Spool() spool.Stats           { return s.a.spool.Stats() }
func (s metricsSource) Uplink() *uplink.Stats        { return &s.a.up.Stats }
func (s metricsSource) SpoolErrors() int64           { return s.a.spoolErrors.Load() }
func (s metricsSource) CollectionLag() time.Duration { return s.a.collectionLag() }
func (s metricsSource) Plugins() []collectors.Status { return s.a.Plugins() }
func (s metricsSource) Cycles() []metrics.Cycle      { return s.a.cycles() }
func (a *Agent) metricsExtra() (out []prometheus.Collector) {
	if a.plugins != nil {
		out = append(out, a.plugins.Host().Metrics())
	}
	return out
}

// cycleIntervals are the performance loops' intervals (vCenter's realtime
// and its first historical interval), in seconds.
var cycleIntervals = []int32{20, 300}

func (a *Agent) cycles() []metrics.Cycle {
	a.perfMu.Lock()
	pcs := append([]perfCollector(nil), a.perfs...)
	a.perfMu.Unlock()
	var out []metrics.Cycle
	for _, pc := range pcs {
		for _, iv := range cycleIntervals {
			st := pc.perf.LastStats(iv)
			out = append(out, metrics.Cycle{Endpoint: pc.endpoint, Interval: time.Duration(iv) * time.Second, Start: st.Start,
				Duration: st.Duration, Entities: st.Entities, Series: st.Series, Values: st.Values, Errors: st.Errors})
		}
	}
	return out
}

// MetricsHandler serves the agent's Prometheus metrics.
func (a *Agent) MetricsHandler() http.Handler { return a.metrics.Handler() }

// serveMetrics serves /metrics on cfg.MetricsListen until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics_listen %s: %w", a.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	a.log.Info("serving metrics", "component", "metrics", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
