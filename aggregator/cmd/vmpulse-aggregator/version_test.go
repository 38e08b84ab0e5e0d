package main

import (
	"runtime"
	"strings"
	"testing"
)

// -version prints the version and commit the build embedded.
func TestVersionLine(t *testing.T) {
	v, c := version, commit
	t.Cleanup(func() { version, commit = v, c })
	version, commit = "v1.2.3", "0123456789ab"
	got := versionLine()
	for _, want := range []string{"vmpulse-aggregator v1.2.3", "commit 0123456789ab", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, want) {
			t.Errorf("versionLine() = %q, want it to contain %q", got, want)
		}
	}
	commit = ""
	if got := versionLine(); !strings.Contains(got, "commit ") || strings.Contains(got, "commit ,") {
		t.Errorf("without main.commit: %q", got)
	}
}
