package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestCommitOverrideAndLine(t *testing.T) {
	if got := Commit("abc123"); got != "abc123" {
		t.Errorf("Commit(override) = %q", got)
	}
	if got := Commit(""); got == "" {
		t.Error("Commit without override is empty; want the VCS revision or \"unknown\"")
	}
	line := Line("vmpulse-x", "v1.2.3", "abc123")
	if want := "vmpulse-x v1.2.3 (commit abc123, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"; line != want {
		t.Errorf("Line = %q, want %q", line, want)
	}
	if !strings.HasPrefix(Line("a", "b", ""), "a b (commit ") {
		t.Error("Line without a commit override")
	}
}
