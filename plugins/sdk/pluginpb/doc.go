// Package pluginpb is the generated Go code of plugin.proto, the gRPC
// contract between vmpulse and its plugins. Go plugins use the types of
// package sdk instead; this package is public so that the .proto and its
// Go rendering stay side by side for authors of plugins in other languages.
//
// Regenerate with generate.sh in this folder.
package pluginpb
