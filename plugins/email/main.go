// Command email is the vmpulse notifier plugin that sends notifications
// over SMTP (STARTTLS, implicit TLS, or plain for a local relay), with
// PLAIN authentication, as multipart/alternative mail with a plain-text and
// an HTML body in the channel's language (en, zh-CN, ja-JP). The config is
// documented in README.md beside this file.
package main

import (
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:     sdk.Info{Name: "email", Version: version, Description: "sends alerts as localized HTML and plain-text mail over SMTP"},
		Notifier: newEmail(),
	})
}
