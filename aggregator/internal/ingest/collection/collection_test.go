package collection

import (
	"strings"
	"testing"
	"time"
)

func TestValidCounterName(t *testing.T) {
	for name, ok := range map[string]bool{
		"cpu.usage.average": true, "disk.maxTotalLatency.latest": true, "net.packetsRx.summation": true, "mem.granted.none": true,
		"virtualDisk.totalReadLatency.average": true, "cpu.usage": false, "cpu.usage.avg": false, ".usage.average": false,
		"cpu..average": false, "cpu.us age.average": false, "": false, "cpu.usage.average.x": false, "1cpu.usage.average": false,
		strings.Repeat("a", 120) + ".b.average": false,
	} {
		if got := ValidCounterName(name); got != ok {
			t.Errorf("ValidCounterName(%q) = %v", name, got)
		}
	}
}

// TestDocSettings: the stored document becomes the protocol's settings;
// an empty field, or a kind without counters, is left out (the agents'
// own); a document not written through the API is refused, never sent.
func TestDocSettings(t *testing.T) {
	s, err := Doc{RealtimeInterval: "40s", TagInterval: "10m0s", Counters: map[string][]string{"vm": {"cpu.usage.average"}, "host": nil}}.Settings(7)
	if err != nil {
		t.Fatal(err)
	}
	if s.Revision != 7 || s.RealtimeInterval != 40*time.Second || s.TagInterval != 10*time.Minute || s.HistoricalInterval != 0 ||
		s.EventsPoll != 0 || len(s.Counters) != 1 || s.Counters["vm"][0] != "cpu.usage.average" {
		t.Errorf("settings: %+v", s)
	}
	if !(Doc{}).Empty() || (Doc{EventsPoll: "5s"}).Empty() {
		t.Error("Empty")
	}
	for _, d := range []Doc{
		{RealtimeInterval: "banana"},
		{EventsPoll: "-5s"},
		{TagInterval: "48h"},
		{Counters: map[string][]string{"vapp": {"cpu.usage.average"}}},
		{Counters: map[string][]string{"vm": {"cpu.usage"}}},
	} {
		if _, err := d.Settings(1); err == nil {
			t.Errorf("%+v: no error", d)
		}
	}
}
