package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkParse measures promexec's own work on a 10,000-sample
// exposition (100 families × 100 label values): parse and samples.
func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	for f := range 100 {
		fmt.Fprintf(&sb, "# TYPE sensor_%d_celsius gauge\n", f)
		for v := range 100 {
			fmt.Fprintf(&sb, "sensor_%d_celsius{slot=\"%d\"} %d.5\n", f, v, f+v)
		}
	}
	src, err := newSource(Config{Command: []string{"true"}})
	if err != nil {
		b.Fatal(err)
	}
	in := []byte(sb.String())
	b.ResetTimer()
	t0 := time.Now()
	for range b.N {
		fams, err := src.parse(in)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(src.samples(fams, time.Now())); n != 10_000 {
			b.Fatalf("%d samples", n)
		}
	}
	ms := float64(time.Since(t0).Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/parse")
}
