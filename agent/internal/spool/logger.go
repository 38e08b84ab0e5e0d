package spool

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger adapts Badger's printf-style logger to slog. Errors and
// warnings are logged as such; Badger's chatty info and debug messages
// (compactions, flushes, replay) go to slog's debug level.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) { l.emit(slog.LevelError, format, args) }

func (l badgerLogger) Warningf(format string, args ...any) { l.emit(slog.LevelWarn, format, args) }

func (l badgerLogger) Infof(format string, args ...any) { l.emit(slog.LevelDebug, format, args) }

func (l badgerLogger) Debugf(format string, args ...any) { l.emit(slog.LevelDebug, format, args) }

func (l badgerLogger) emit(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	l.log.Log(ctx, level, msg, "source", "badger")
}
