package main

import "github.com/vmpulse/vmpulse/protocol/buildinfo"

// buildCommit is the commit the binary was built from (see
// buildinfo.Commit): main.commit when the build set it (make build / make
// dist), else the VCS revision the go command stamped.
func buildCommit() string { return buildinfo.Commit(commit) }

// versionLine is what -version (and the version command) prints.
func versionLine() string { return buildinfo.Line("vmpulse-aggregator", version, commit) }
