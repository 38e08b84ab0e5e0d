// Package sdk is the public contract between vmpulse and its plugins:
// the Go interfaces a plugin implements (Notifier, Collector), the
// versioned handshake, and the go-plugin glue that carries them over gRPC.
// Package host (plugins/sdk/host) is the other side: it discovers, starts,
// supervises and calls plugins for the aggregator and the agent; package
// plugintest runs a plugin in-process for its author's tests.
//
// # Writing a plugin
//
// A plugin is its own executable. Its main calls Serve:
//
//	func main() {
//		sdk.Serve(sdk.ServeConfig{
//			Info:     sdk.Info{Name: "webhook", Version: version},
//			Notifier: &notifier{},
//		})
//	}
//
// Serve never returns. The process must not write to stdout: go-plugin uses
// it for the handshake line. Log with Logger (or slog's default, which
// Serve points at it): the host forwards each record to its own log with
// the plugin's name attached.
//
// # Protocol flow
//
//	host   → starts the binary with VMPULSE_PLUGIN=<cookie> and
//	         PLUGIN_PROTOCOL_VERSIONS=<versions it speaks>
//	plugin → stdout "CORE|APP|grpc|addr|grpc|cert": go-plugin's handshake
//	         line, APP being the ProtocolVersion the plugin was built with
//	host   → refuses the plugin when APP is not one of its versions
//	         (host.ErrHandshake), else connects over gRPC with mutual TLS
//	host   → Plugin.Info: name, version, kinds ("notifier", "collector")
//	host   → Notifier.Validate / Notifier.Notify, Collector.Describe /
//	         Collector.Collect, each with the caller's deadline
//	host   → grpc.health.v1 checks (go-plugin's Ping) between calls
//
// Every method takes a context whose deadline is the host's per-call
// timeout and returns an error. An error means the call failed as a call
// (bad input, the plugin is broken, the context ended); the outcome of a
// delivery that reached the provider is a Result, never an error.
//
// # Versions
//
// ProtocolVersion is the plugin protocol this package speaks. History:
//
//   - 1: Plugin.Info, Notifier (Validate, Notify with digests and
//     provider error codes), Collector (Describe, Collect).
//
// Adding a field to a message (pluginpb/plugin.proto) needs no new version:
// an older peer ignores it. A change that an older peer would misread, or a
// new call a host relies on, raises ProtocolVersion; a host that still
// supports the older version keeps serving its plugin set for it.
package sdk
