//go:build unix

package spool

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdle measures the CPU an idle, open spool costs (background
// goroutines: group commit, maintenance, Badger's own).
func BenchmarkIdle(b *testing.B) {
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	time.Sleep(time.Second) // let Open's own work settle
	const window = 10 * time.Second
	var msPerMin float64
	for b.Loop() {
		c0 := processCPU(b)
		time.Sleep(window)
		msPerMin = float64((processCPU(b) - c0).Microseconds()) / 1000 * float64(time.Minute/window)
	}
	b.ReportMetric(msPerMin, "cpu-ms/min")
	fmt.Printf("figure: spool_idle_cpu_ms_per_min %.1f ms\n", msPerMin)
}

func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
