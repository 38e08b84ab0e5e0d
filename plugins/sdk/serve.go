package sdk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EnvLogLevel is the environment variable through which the host tells a
// plugin the lowest level it will keep ("debug", "info", "warn", "error").
const EnvLogLevel = "VMPULSE_PLUGIN_LOG_LEVEL"

// stderr is the process's stderr as it was at start. go-plugin's Serve
// replaces os.Stderr with a pipe; the host reads log lines from the original.
var stderr io.Writer = os.Stderr

// ServeConfig is what a plugin's main passes to Serve.
type ServeConfig struct {
	// Info is the plugin's identity; Kinds and ProtocolVersion are filled in.
	Info Info
	// Notifier and Collector are the services the plugin implements; at
	// least one must be set.
	Notifier  Notifier
	Collector Collector
	// Logger is the plugin's logger; nil means Logger().
	Logger *slog.Logger
}

// Serve serves the plugin to the host that started it and never returns.
// Run by hand (without the host's handshake cookie), it prints an
// explanation and exits with status 1.
func Serve(cfg ServeConfig) {
	if cfg.Notifier == nil && cfg.Collector == nil {
		fmt.Fprintln(os.Stderr, "sdk.Serve: the plugin implements neither Notifier nor Collector")
		os.Exit(2)
	}
	log := cfg.Logger
	if log == nil {
		log = Logger()
	}
	slog.SetDefault(log)
	info := cfg.Info
	info.ProtocolVersion = ProtocolVersion
	info.Kinds = nil
	if cfg.Notifier != nil {
		info.Kinds = append(info.Kinds, KindNotifier)
	}
	if cfg.Collector != nil {
		info.Kinds = append(info.Kinds, KindCollector)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(info, cfg.Notifier, cfg.Collector),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.ChainUnaryInterceptor(RecoverPanics(log)))
			return grpc.NewServer(opts...)
		},
		// go-plugin's own messages, in the JSON the host parses.
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Info,
			Output:     stderr,
			JSONFormat: true,
		}),
	})
	os.Exit(0)
}

// RecoverPanics is a gRPC interceptor that turns a panic in a call into an
// Internal error for that call, so that one bad notification does not kill
// the calls running beside it. Serve installs it.
func RecoverPanics(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in plugin call", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "plugin panicked: %v", r)
			}
		}()
		return handler(ctx, req)
	}
}

// Logger returns the logger a plugin should use: JSON lines on the
// process's original stderr in the shape go-plugin forwards (@level,
// @message, @timestamp), at the level the host asked for in EnvLogLevel.
// The host adds the plugin's name.
func Logger() *slog.Logger {
	return NewLogger(stderr, os.Getenv(EnvLogLevel))
}

// NewLogger is Logger writing to w at level ("debug", "info", "warn",
// "error"; anything else means "info").
func NewLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: lv,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.Any().(slog.Level).String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}
