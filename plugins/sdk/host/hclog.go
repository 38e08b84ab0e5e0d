package host

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is the hclog.Logger that go-plugin writes to, forwarding to
// the host's slog. go-plugin's own messages (starting, exited) come in
// through the root adapter; the plugin's stderr lines come in through
// Named(<binary>), which marks them as the plugin's and keeps their level.
type hclogAdapter struct {
	log        *slog.Logger
	fromPlugin bool
	implied    []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLog(l *slog.Logger) *hclogAdapter { return &hclogAdapter{log: l} }

func (a *hclogAdapter) level(l hclog.Level) slog.Level {
	var lv slog.Level
	switch l {
	case hclog.Trace:
		lv = slog.LevelDebug - 4
	case hclog.Debug, hclog.NoLevel:
		lv = slog.LevelDebug
	case hclog.Info:
		lv = slog.LevelInfo
	case hclog.Warn:
		lv = slog.LevelWarn
	default:
		lv = slog.LevelError
	}
	// go-plugin narrates every start and stop at Info and Debug; that is
	// the host's business, not the operator's.
	if !a.fromPlugin && lv < slog.LevelWarn {
		lv = slog.LevelDebug
	}
	return lv
}

func (a *hclogAdapter) Log(l hclog.Level, msg string, args ...any) {
	lv := a.level(l)
	ctx := context.Background()
	if !a.log.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, len(a.implied)+len(args))
	attrs = append(attrs, a.implied...)
	for i := 0; i+1 < len(args); i += 2 {
		k := fmt.Sprint(args[i])
		// go-plugin adds these; the host's record has its own time and
		// the plugin's name already.
		if k == "timestamp" || k == "plugin" || (k == "id" && !a.fromPlugin) {
			continue
		}
		attrs = append(attrs, k, args[i+1])
	}
	a.log.Log(ctx, lv, msg, attrs...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.log.Enabled(context.Background(), a.level(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(append([]any(nil), a.implied...), args...)
	return &b
}

func (a *hclogAdapter) Name() string { return "" }

// Named is how go-plugin tags the plugin's stderr lines (named after the
// binary) and its own stdio copier ("stdio"). The host's logger already
// names the plugin, so the name itself adds nothing.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	b.fromPlugin = name != "stdio"
	return &b
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger { return a.Named(name) }

func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel reports Trace so that go-plugin parses every line and the slog
// handler decides what to keep.
func (a *hclogAdapter) GetLevel() hclog.Level { return hclog.Trace }

func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(a.log.Handler(), slog.LevelInfo)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(nil).Writer()
}
