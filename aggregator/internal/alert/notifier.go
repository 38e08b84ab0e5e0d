package alert

import (
	"context"
	"fmt"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Notifier delivers one notification to one channel. It is the only way
// notifications leave the engine: the dispatcher and the channel test call
// it, and know nothing of plugins, HTTP or SMTP.
//
// ch.Config is the channel's config with its secrets merged in. n.ID is the
// notification's idempotency key, stable across retries; n.Config is
// ch.Config. Implementations must be safe for concurrent use and return
// when ctx ends. An error means the call itself failed (the dispatcher
// retries it); a Result says what the provider did.
type Notifier interface {
	Notify(ctx context.Context, ch Channel, n sdk.Notification) (sdk.Result, error)
}

// ConfigValidator is implemented by Notifiers that can check a channel's
// config before it is stored.
type ConfigValidator interface {
	ValidateConfig(ctx context.Context, ch Channel) error
}

// PluginHost hands out notifier plugins by name; *host.Host (package
// plugins/sdk/host) implements it.
type PluginHost interface {
	Notifier(name string) (sdk.Notifier, error)
}

// PluginNotifier delivers through the notifier plugin named by each
// channel's type (a channel of type "webhook" through the plugin installed
// as "webhook"), with the host's timeouts, concurrency limits and restarts.
type PluginNotifier struct{ Host PluginHost }

// Notify implements Notifier.
func (p PluginNotifier) Notify(ctx context.Context, ch Channel, n sdk.Notification) (sdk.Result, error) {
	nt, err := p.Host.Notifier(ch.Type)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("alert: channel %s: %w", ch.Name, err)
	}
	n.Config = ch.Config
	return nt.Notify(ctx, n)
}

// ValidateConfig implements ConfigValidator: the plugin checks the config.
func (p PluginNotifier) ValidateConfig(ctx context.Context, ch Channel) error {
	nt, err := p.Host.Notifier(ch.Type)
	if err != nil {
		return fmt.Errorf("alert: channel type %s: %w", ch.Type, err)
	}
	return nt.Validate(ctx, ch.Config)
}
