package host

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// notifier is the sdk.Notifier a Host hands out: every call goes through
// the plugin's timeout, concurrency limit and crash retry.
type notifier struct{ m *managed }

func (n *notifier) Validate(ctx context.Context, config json.RawMessage) error {
	return n.m.call(ctx, "validate", func(ctx context.Context, i *instance) error {
		if i.notifier == nil {
			return errNotKind(n.m.name, sdk.KindNotifier)
		}
		return i.notifier.Validate(ctx, config)
	})
}

func (n *notifier) Notify(ctx context.Context, note sdk.Notification) (sdk.Result, error) {
	var res sdk.Result
	err := n.m.call(ctx, "notify", func(ctx context.Context, i *instance) error {
		if i.notifier == nil {
			return errNotKind(n.m.name, sdk.KindNotifier)
		}
		var err error
		res, err = i.notifier.Notify(ctx, note)
		return err
	})
	return res, err
}

// collector is the sdk.Collector a Host hands out.
type collector struct{ m *managed }

func (c *collector) Describe(ctx context.Context) (sdk.Description, error) {
	var d sdk.Description
	err := c.m.call(ctx, "describe", func(ctx context.Context, i *instance) error {
		if i.collector == nil {
			return errNotKind(c.m.name, sdk.KindCollector)
		}
		var err error
		d, err = i.collector.Describe(ctx)
		return err
	})
	return d, err
}

func (c *collector) Collect(ctx context.Context, since time.Time) ([]sdk.Sample, error) {
	var out []sdk.Sample
	err := c.m.call(ctx, "collect", func(ctx context.Context, i *instance) error {
		if i.collector == nil {
			return errNotKind(c.m.name, sdk.KindCollector)
		}
		var err error
		out, err = i.collector.Collect(ctx, since)
		return err
	})
	return out, err
}

func errNotKind(name string, k sdk.Kind) error {
	return &sdk.PluginError{Method: string(k), Message: "plugin " + name + " does not implement " + string(k)}
}
