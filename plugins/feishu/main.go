// Command feishu is the vmpulse notifier plugin for Feishu / Lark custom
// bots: interactive cards with a Markdown body, the signed security mode
// (the signature travels in the JSON body), the custom-keyword mode, and
// the bot's rate limits (100 messages a minute, 5 a second) kept locally.
// See README.md beside this file.
package main

import (
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:     sdk.Info{Name: "feishu", Version: version, Description: "Feishu / Lark custom bot: signed card messages"},
		Notifier: newFeishu(),
	})
}
