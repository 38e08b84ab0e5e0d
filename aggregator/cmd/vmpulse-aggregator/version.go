package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// buildCommit is the commit the binary was built from: main.commit when
// the build set it (make build / make dist), else the VCS revision the go
// command stamped (with "-dirty" for a modified tree), else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return rev
}

// versionLine is what -version (and the version command) prints.
func versionLine() string {
	return fmt.Sprintf("vmpulse-aggregator %s (commit %s, %s, %s/%s)", version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
