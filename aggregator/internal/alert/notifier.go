package alert

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
)

// ErrNotifierUnavailable wraps a Notify error meaning that no plugin
// could make the attempt: none of the channel's type is installed, or it
// was refused (checksum, handshake). The dispatcher keeps such a
// notification pending without counting the attempt, so nothing is given
// up while an operator fixes the plugin.
var ErrNotifierUnavailable = errors.New("notifier plugin unavailable")

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
		return sdk.Result{}, fmt.Errorf("alert: channel %s: %w: %w", ch.Name, ErrNotifierUnavailable, err)
	}
	n.Config = ch.Config
	res, err := nt.Notify(ctx, n)
	if errors.Is(err, host.ErrRefused) {
		err = fmt.Errorf("alert: channel %s: %w: %w", ch.Name, ErrNotifierUnavailable, err)
	}
	return res, err
}

// ValidateConfig implements ConfigValidator: the plugin checks the config.
func (p PluginNotifier) ValidateConfig(ctx context.Context, ch Channel) error {
	nt, err := p.Host.Notifier(ch.Type)
	if err != nil {
		return fmt.Errorf("alert: channel type %s: %w", ch.Type, err)
	}
	return nt.Validate(ctx, ch.Config)
}
