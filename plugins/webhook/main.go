// Command webhook is the vmpulse notifier plugin that POSTs each
// notification as JSON to an HTTP endpoint. The payload's schema, the
// signature and the config are documented in README.md beside this file.
package main

import (
	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:     sdk.Info{Name: "webhook", Version: version, Description: "POSTs alerts as signed JSON (vmpulse.webhook.v1)"},
		Notifier: newWebhook(),
	})
}
