// Command wecom is the vmpulse notifier plugin for WeCom (企业微信) group
// robots: Markdown messages to the robot's webhook (its key in the URL),
// mentions, and the robot's rate limit (20 messages a minute) kept locally.
// See README.md beside this file.
package main

import (
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:     sdk.Info{Name: "wecom", Version: version, Description: "WeCom group robot: Markdown messages"},
		Notifier: newWeCom(),
	})
}
