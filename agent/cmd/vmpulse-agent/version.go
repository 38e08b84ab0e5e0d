package main

import (
	"fmt"
	"runtime"

	"github.com/vmpulse/vmpulse/agent"
)

// buildCommit is the commit: main.commit when the build set it, else the
// VCS revision the go command stamped.
func buildCommit() string { return agent.BuildCommit(commit) }

// versionLine is what -version prints.
func versionLine() string {
	return fmt.Sprintf("vmpulse-agent %s (commit %s, %s, %s/%s)", version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
