package httpapi

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// BenchmarkAPIVMs loads the VM list of a real HTTP server (the API's
// handler on a loopback listener, its store on PostgreSQL) from a separate
// process, wrk, over an inventory of BENCH_API_VMS VMs (default 10,000)
// written through the store's inventory write path. It prints:
//
//   - api_get_vms_per_s: GET /vms (first page of 50) with 2 wrk threads
//     and 32 connections for 10 s: requests per second at saturation;
//   - vms_list_filtered_p99_ms: GET /vms filtered by power state and a name
//     substring, sorted by name, one connection for 10 s (requests back to
//     back, no queueing): the 99th percentile of wrk's latencies.
//
// wrk shares the machine's cores with the server and PostgreSQL. Without
// wrk in PATH (Debian: apt-get install -y wrk) the benchmark skips.
func BenchmarkAPIVMs(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed: apt-get install -y wrk (scripts/bench.sh api installs it when run as root)")
	}
	nVMs := 10000
	if s := os.Getenv("BENCH_API_VMS"); s != "" {
		if nVMs, err = strconv.Atoi(s); err != nil || nVMs < 100 {
			b.Fatalf("BENCH_API_VMS=%q: want a number of at least 100", s)
		}
	}
	e := newEnv(b, nil)
	e.logs.t = discardTB{b} // the access log is still formatted, not forwarded
	agent := e.enrollAgent("dc-east", "east-1")
	objs := []protocol.InventoryObject{
		invObj("datacenter", "datacenter-1", "DC1", "/Datacenters/DC1", nil),
		invObj("cluster", "domain-c1", "Prod", "/Datacenters/DC1/host/Prod", map[string]any{"num_hosts": 20}),
	}
	for h := range 20 {
		objs = append(objs, invObj("host", fmt.Sprintf("host-%d", h), fmt.Sprintf("esx%02d", h), fmt.Sprintf("/Datacenters/DC1/host/Prod/esx%02d", h),
			map[string]any{"cluster_id": "domain-c1", "connection_state": "connected", "cpu_cores": 32}))
	}
	power := []string{"poweredOn", "poweredOn", "poweredOn", "poweredOff", "suspended"}
	for i := range nVMs {
		name := fmt.Sprintf("app-%05d", i)
		objs = append(objs, invObj("vm", fmt.Sprintf("vm-%d", i), name, "/Datacenters/DC1/vm/"+name, map[string]any{
			"power_state": power[i%len(power)], "tools_running_status": "guestToolsRunning", "num_cpu": 1 + i%8, "memory_mb": 1024 * (1 + i%16),
			"host_id": fmt.Sprintf("host-%d", i%20), "cluster_id": "domain-c1", "guest_hostname": name + ".example.com",
		}))
	}
	t0 := time.Now()
	e.writeInv(agent, 1, vcEast, objs...)
	b.Logf("wrote an inventory of %d VMs in %s", nVMs, time.Since(t0).Round(time.Millisecond))

	srv := httptest.NewServer(e.api.Handler())
	defer srv.Close()
	token := e.tokens["viewer"]
	list := "/api/v1/vms?page_size=50"
	filtered := "/api/v1/vms?power_state=poweredOn&q=7&sort=name&page_size=50" // a name digit: about a fifth of the fleet
	for _, path := range []string{list, filtered} {
		res := e.do("GET", path, token, "")
		if res.status != 200 || !strings.Contains(string(res.raw), `"name":"app-`) {
			b.Fatalf("%s: %d %.300s", path, res.status, res.raw)
		}
	}
	for b.Loop() {
		rps, _ := runWrk(b, wrk, srv.URL+list, token, 2, 32)
		_, p99 := runWrk(b, wrk, srv.URL+filtered, token, 1, 1)
		fmt.Printf("figure: api_get_vms_per_s %.0f req/s\n", rps)
		fmt.Printf("figure: vms_list_filtered_p99_ms %.2f ms\n", p99)
	}
}

var (
	wrkRate    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99     = regexp.MustCompile(`\n\s+99%\s+([0-9.]+)(us|ms|s)\b`)
	wrkErrors  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
	wrkLatUnit = map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3}
)

// runWrk runs wrk for 10 s against url with threads and connections, and
// returns its requests per second and 99th percentile latency (ms). Any
// error response or socket error fails the benchmark.
func runWrk(b *testing.B, wrk, url, token string, threads, conns int) (rps, p99ms float64) {
	b.Helper()
	out, err := exec.Command(wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", "10s", "--latency",
		"-H", "Authorization: Bearer "+token, url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	if m := wrkErrors.Find(out); m != nil {
		b.Fatalf("wrk against %s: %s\n%s", url, m, out)
	}
	r, p := wrkRate.FindSubmatch(out), wrkP99.FindSubmatch(out)
	if r == nil || p == nil {
		b.Fatalf("wrk output not understood:\n%s", out)
	}
	rps, _ = strconv.ParseFloat(string(r[1]), 64)
	p99ms, _ = strconv.ParseFloat(string(p[1]), 64)
	b.Logf("wrk -t%d -c%d %s:\n%s", threads, conns, url, out)
	return rps, p99ms * wrkLatUnit[string(p[2])]
}
