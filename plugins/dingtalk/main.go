// Command dingtalk is the vmpulse notifier plugin for DingTalk (钉钉)
// custom group robots: Markdown messages, the signed security mode, the
// custom-keyword mode, at-mentions, and the robot's rate limit (20
// messages a minute; exceeding it throttles the robot for 10 minutes), kept
// locally so that a storm never trips it. See README.md beside this file.
package main

import (
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:     sdk.Info{Name: "dingtalk", Version: version, Description: "DingTalk custom robot: signed Markdown messages"},
		Notifier: newDingTalk(),
	})
}
