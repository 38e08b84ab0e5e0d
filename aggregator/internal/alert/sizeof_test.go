package alert

import (
	"testing"
	"unsafe"
)

// TestWindowFitsACacheLine: a window (touched by every sample of its
// metric) stays within one 64-byte cache line.
func TestWindowFitsACacheLine(t *testing.T) {
	if n := unsafe.Sizeof(window{}); n > 64 {
		t.Errorf("window is %d bytes, more than a cache line", n)
	}
}
