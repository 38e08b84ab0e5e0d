package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// BenchmarkRealtime measures the live feed from COMMIT to the client:
// 1,000 WebSocket clients over loopback, each subscribed to every metric
// of 5 VMs (each VM watched by 5 clients); each iteration commits one poll
// of 1,000 VMs × 15 counters through the store's write path, publishes it
// as ingest does, and waits until every client has it. It prints the p50
// and p99 of COMMIT → client receipt over every (client, batch), and the
// CPU time of this process from publication to the last receipt per
// delivered sample — the hub's fan-out, the JSON, the WebSocket writes and
// the 1,000 in-process clients' reads together, so an upper bound of the
// server's share.
func BenchmarkRealtime(b *testing.B) {
	const (
		clients   = 1000
		vms       = 1000
		perClient = 5
	)
	// The aggregator's own GOGC (its main sets 200 unless GOGC is set).
	defer debug.SetGCPercent(debug.SetGCPercent(200))
	e := newEnv(b, nil)
	e.logs.t = discardTB{b}
	agent := e.enrollAgent("dc-bench", "bench-1")
	objs := make([]protocol.InventoryObject, 0, vms)
	for i := range vms {
		id := "vm-" + strconv.Itoa(1000+i)
		objs = append(objs, invObj("vm", id, "bench-"+id, "/Datacenters/DCB/vm/"+id, map[string]any{"power_state": "poweredOn"}))
	}
	e.writeInv(agent, 1, "vc-bench", objs...)
	srv := e.serve()
	url := wsURL(srv)
	token := e.tokens["viewer"]

	// commitAt[seq] is when the batch the hub numbers seq was committed.
	commitAt := make([]atomic.Int64, 1<<16)
	received := make([]atomic.Int32, 1<<16)
	var delivered atomic.Int64
	lat := make([][]time.Duration, clients)
	conns := make([]*websocket.Conn, clients)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	dial := make(chan int)
	var dialErr atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range dial {
				c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
				if err != nil {
					dialErr.Store(err)
					continue
				}
				c.SetReadLimit(1 << 24)
				conns[i] = c
				ents := make([]entityRef, 0, perClient)
				for k := range perClient {
					ents = append(ents, entityRef{Kind: "vm", ID: objectID("vc-bench", "vm-"+strconv.Itoa(1000+(i*perClient+k)%vms))})
				}
				msg := []byte(`{"type":"subscribe","entities":` + mustJSON(ents) + `}`)
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					dialErr.Store(err)
					continue
				}
				for n := 0; n < 2; n++ { // welcome, subscribed
					if _, m, err := c.Read(ctx); err != nil || bytes.Contains(m, []byte(`"error"`)) {
						dialErr.Store(fmt.Errorf("client %d: %v %s", i, err, m))
					}
				}
			}
		}()
	}
	for i := range clients {
		dial <- i
	}
	close(dial)
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		b.Fatalf("connecting the clients: %v", err)
	}
	for i, c := range conns {
		go func() {
			var buf bytes.Buffer
			for {
				_, r, err := c.Reader(ctx)
				if err != nil {
					return
				}
				buf.Reset()
				if _, err := buf.ReadFrom(r); err != nil {
					return
				}
				m := buf.Bytes()
				now := time.Now().UnixNano()
				j := bytes.Index(m, []byte(`"seq":`))
				k := bytes.IndexByte(m[j+6:], ',')
				seq, _ := strconv.Atoi(string(m[j+6 : j+6+k]))
				lat[i] = append(lat[i], time.Duration(now-commitAt[seq].Load()))
				delivered.Add(int64(bytes.Count(m, []byte(`{"kind":`))))
				received[seq].Add(1)
			}
		}()
	}

	start := time.Now().Add(-time.Hour).Truncate(20 * time.Second).UnixMilli()
	var seq uint64
	// batch commits and publishes the next batch and waits for every
	// client to have it; it returns when the last one did, after COMMIT.
	batch := func() time.Duration {
		seq++
		p := ingesttest.Samples("vc-bench", vms, 1, start+int64(seq)*20_000, seq)
		if _, err := e.store.WriteSamples(context.Background(), store.BatchMeta{AgentID: agent.ID, Site: "dc-bench", Epoch: 1, Seq: seq + 1,
			Kind: protocol.KindSamples}, p); err != nil {
			b.Fatal(err)
		}
		commitAt[seq].Store(time.Now().UnixNano())
		e.hub().PublishSamples("dc-bench", agent.ID, p)
		deadline := time.Now().Add(30 * time.Second)
		for received[seq].Load() < clients {
			if time.Now().After(deadline) {
				b.Fatalf("batch %d reached %d of %d clients in 30s (hub %+v)", seq, received[seq].Load(), clients, e.hub().Stats())
			}
			time.Sleep(100 * time.Microsecond)
		}
		return time.Duration(time.Now().UnixNano() - commitAt[seq].Load())
	}
	// Two batches warm the 2,000 connections' goroutines and buffers up;
	// they are reported apart, not counted.
	warm := []time.Duration{batch(), batch()}
	for i := range lat {
		lat[i] = lat[i][:0]
	}
	delivered.Store(0)
	var cpu time.Duration
	for b.Loop() {
		cpu0 := cpuTime()
		last := batch()
		cpu += cpuTime() - cpu0
		if testing.Verbose() {
			fmt.Printf("batch %d: all clients %.1f ms after COMMIT\n", seq, float64(last.Microseconds())/1000)
		}
	}
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(float64(len(all)-1)*p)].Microseconds()) / 1000 }
	n := delivered.Load()
	st := e.hub().Stats()
	fmt.Printf("%d clients × %d VMs × 15 counters, %d batches (after 2 to warm up: last client %.0f and %.0f ms after COMMIT): "+
		"%d samples delivered, %d slow consumers dropped\n",
		clients, perClient, seq-2, float64(warm[0].Milliseconds()), float64(warm[1].Milliseconds()), n, st.SlowConsumers)
	fmt.Printf("COMMIT → client p50 %.1f ms, max %.1f ms\n", pct(0.5), pct(1))
	fmt.Printf("figure: realtime_commit_to_client_p99_ms %.1f ms\n", pct(0.99))
	fmt.Printf("figure: realtime_cpu_per_delivered_sample_us %.2f us\n", float64(cpu.Nanoseconds())/float64(n)/1e3)
	for _, c := range conns {
		c.CloseNow()
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
