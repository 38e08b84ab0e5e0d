// Package buildinfo is the build identity both binaries print with
// -version and report to each other (the agent in its hello, the
// aggregator in /system/info): one rule for the commit, in one place.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Commit is the commit the binary was built from: override when set (a
// -X main.commit ldflag, as make build and make dist set it), else the VCS
// revision the go command stamped (12 characters, "-dirty" for a modified
// tree), else "unknown".
func Commit(override string) string {
	if override != "" {
		return override
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

// Line is what -version prints: "NAME VERSION (commit C, goX, os/arch)".
func Line(name, version, commit string) string {
	return fmt.Sprintf("%s %s (commit %s, %s, %s/%s)", name, version, Commit(commit), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
