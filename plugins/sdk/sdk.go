package sdk

import (
	plugin "github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the plugin protocol version this package speaks; see
// the package documentation for its history.
const ProtocolVersion = 1

// Handshake is go-plugin's handshake for vmpulse plugins. The cookie is not
// a secret: it only stops a user from running a plugin by hand and keeps
// other go-plugin hosts from starting a vmpulse plugin by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "VMPULSE_PLUGIN",
	MagicCookieValue: "4e5b1c0a-vmpulse-plugin-7f2d9c1e",
}

// Kind names a service a plugin implements.
type Kind string

// The kinds of plugin vmpulse knows.
const (
	KindNotifier  Kind = "notifier"
	KindCollector Kind = "collector"
)

// The names under which the services are registered in go-plugin's plugin
// set (ClientProtocol.Dispense takes them).
const (
	pluginInfo      = "info"
	pluginNotifier  = string(KindNotifier)
	pluginCollector = string(KindCollector)
)

// Info is a plugin's identity as it reports it to the host.
type Info struct {
	// Name is the plugin's name ("webhook"); the host logs and reports
	// the plugin under the name it was installed as, and warns when the
	// two differ.
	Name string
	// Version is the plugin's own release ("1.2.0").
	Version string
	// Description is one line for status pages.
	Description string
	// Kinds lists the services the plugin implements. Serve fills it in.
	Kinds []Kind
	// ProtocolVersion is the protocol the plugin was built with. Serve
	// fills it in.
	ProtocolVersion int
}

// Has reports whether the plugin implements kind k.
func (i Info) Has(k Kind) bool {
	for _, x := range i.Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// PluginSet returns go-plugin's plugin set for a process that serves info
// and, where not nil, n and c. A host passes PluginSet(Info{}, nil, nil):
// on the client side only the names and types matter.
func PluginSet(info Info, n Notifier, c Collector) plugin.PluginSet {
	return plugin.PluginSet{
		pluginInfo:      &infoPlugin{info: info},
		pluginNotifier:  &NotifierPlugin{Impl: n},
		pluginCollector: &CollectorPlugin{Impl: c},
	}
}
