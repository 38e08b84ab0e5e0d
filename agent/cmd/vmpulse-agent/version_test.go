package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestVersionFlag builds the agent with the version and commit set the way
// the Makefile sets them and checks what -version and `version` print.
func TestVersionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "vmpulse-agent")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3-test -X main.commit=abc123def456", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	want := regexp.MustCompile(`^vmpulse-agent 1\.2\.3-test \(commit abc123def456, go[0-9.]+\S*, \w+/\w+\)\n$`)
	for _, args := range [][]string{{"-version"}, {"version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !want.Match(out) {
			t.Errorf("%v printed %q, want %s", args, out, want)
		}
	}
}

// TestBuildCommitFromBuildInfo: without -X main.commit the commit comes
// from the build info (a test binary has none stamped: "unknown").
func TestBuildCommitFromBuildInfo(t *testing.T) {
	if commit != "" {
		t.Fatalf("commit is %q in a test binary", commit)
	}
	if got := buildCommit(); got == "" {
		t.Error("buildCommit is empty")
	}
	commit = "feedface"
	defer func() { commit = "" }()
	if got := buildCommit(); got != "feedface" {
		t.Errorf("buildCommit = %q with main.commit set, want feedface", got)
	}
}
