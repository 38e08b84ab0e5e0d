package main

import "github.com/vmpulse/vmpulse/protocol/buildinfo"

// buildCommit is the commit: main.commit when the build set it, else the
// VCS revision the go command stamped.
func buildCommit() string { return buildinfo.Commit(commit) }

// versionLine is what -version prints.
func versionLine() string { return buildinfo.Line("vmpulse-agent", version, commit) }
