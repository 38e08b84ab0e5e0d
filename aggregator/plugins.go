package aggregator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
)

// sumsFile is the name of the pin file in the plugins folder, used when
// the config lists no notifiers.
const sumsFile = "SHA256SUMS"

// pluginsDir is the folder the plugin host runs from.
func pluginsDir(cfg Config) string {
	if cfg.Plugins.Dir != "" {
		return cfg.Plugins.Dir
	}
	return filepath.Join(cfg.DataDir, "plugins")
}

// startNotifierPlugins starts the plugin host over the plugins folder and
// reports, plugin by plugin, what came of it. It returns nil (having
// logged why) when there is no folder or the host cannot start: alert
// notifications then stay queued in the outbox.
func startNotifierPlugins(ctx context.Context, cfg Config, log *slog.Logger) *host.Host {
	plog := log.With("component", "plugins")
	dir := pluginsDir(cfg)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if len(cfg.Plugins.Notifiers) > 0 {
			plog.Error("plugins.dir is not a folder: no notifier plugin started; alert notifications stay queued",
				"dir", dir, "notifiers", notifierNames(cfg.Plugins.Notifiers))
		} else {
			plog.Warn("no notifier plugins (no " + dir + "): alert notifications stay queued")
		}
		return nil
	}
	hc := pluginHostConfig(cfg, dir, plog)
	h, err := host.New(hc)
	if err == nil {
		if err = h.Start(ctx); err != nil {
			_ = h.Close()
		}
	}
	if err != nil {
		plog.Error("notifier plugins unavailable: alert notifications stay queued", "dir", dir, "err", err)
		return nil
	}
	reportPlugins(plog, dir, hc.Plugins, h.Status())
	checkPluginPerms(plog, dir, hc.Plugins, len(cfg.Plugins.Notifiers) == 0)
	return h
}

// pluginHostConfig is the host's configuration for the plugins section:
// the pins come from plugins.notifiers or, when it lists none, from
// dir/SHA256SUMS. It logs which, and every malformed line of that file.
func pluginHostConfig(cfg Config, dir string, log *slog.Logger) host.Config {
	pc := cfg.Plugins
	hc := host.Config{
		Dir:           dir,
		Plugins:       map[string]host.PluginConfig{},
		CallTimeout:   time.Duration(pc.Timeout),
		MaxConcurrent: pc.MaxConcurrency,
		RestartMin:    time.Duration(pc.RestartMin),
		RestartMax:    time.Duration(pc.RestartMax),
		HostName:      "vmpulse-aggregator",
		Logger:        log,
	}
	sums := filepath.Join(dir, sumsFile)
	if len(pc.Notifiers) > 0 {
		for _, n := range pc.Notifiers {
			hc.Plugins[n.Name] = host.PluginConfig{
				SHA256:        strings.ToLower(n.SHA256),
				Disabled:      n.Disabled,
				Args:          n.Args,
				Env:           envList(n.Env),
				CallTimeout:   time.Duration(n.Timeout),
				MaxConcurrent: n.MaxConcurrency,
			}
		}
		log.Info("notifier plugin checksums from the config (plugins.notifiers)", "dir", dir, "notifiers", notifierNames(pc.Notifiers))
		if _, err := os.Stat(sums); err == nil {
			log.Warn("plugins.notifiers is set, so "+sums+" is ignored: the config's checksums win", "file", sums)
		}
		return hc
	}
	pins, err := readSHA256SUMS(sums)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("no plugins.notifiers in the config and no "+sums+": every plugin in the folder is refused as unpinned", "dir", dir)
		return hc
	case err != nil && pins == nil:
		log.Error("plugin checksums unreadable: every plugin in the folder is refused as unpinned", "file", sums, "err", err)
		return hc
	case err != nil:
		for _, e := range joined(err) {
			log.Error("malformed line in the plugin checksums; a plugin it meant to pin is refused as unpinned", "err", e)
		}
	}
	names := make([]string, 0, len(pins))
	for name, sum := range pins {
		hc.Plugins[name] = host.PluginConfig{SHA256: sum}
		names = append(names, name)
	}
	slices.Sort(names)
	log.Info("notifier plugin checksums from "+sums+" (the config lists no plugins.notifiers)", "file", sums, "plugins", names)
	return hc
}

// reportPlugins logs, after the host started, every pinned plugin that is
// not serving and why, every plugin that is not a notifier, and the
// notifiers that are ready.
func reportPlugins(log *slog.Logger, dir string, pins map[string]host.PluginConfig, status []host.Status) {
	byName := map[string]host.Status{}
	for _, st := range status {
		byName[st.Name] = st
	}
	names := make([]string, 0, len(pins)+len(status))
	for name, p := range pins {
		if !p.Disabled {
			names = append(names, name)
		}
	}
	for _, st := range status {
		names = append(names, st.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	ready := []string{}
	for _, name := range names {
		st, found := byName[name]
		switch {
		case !found:
			log.Error("notifier plugin not found: notifications to channels of its type wait in the outbox: install or fix it and restart the aggregator, which then sends them",
				"plugin", name, "path", filepath.Join(dir, name))
		case st.State == host.StateRefused:
			log.Error("notifier plugin refused: notifications to channels of its type wait in the outbox: install or fix it and restart the aggregator, which then sends them",
				"plugin", name, "path", st.Path, "err", st.LastError)
		case st.State != host.StateRunning:
			log.Warn("notifier plugin did not start; it is restarted with backoff, and notifications to channels of its type are retried",
				"plugin", name, "state", st.State, "err", st.LastError)
		case !slices.Contains(st.Kinds, sdk.KindNotifier):
			log.Warn("plugin is not a notifier: the aggregator runs it but sends it nothing", "plugin", name, "kinds", st.Kinds)
		default:
			ready = append(ready, name)
		}
	}
	log.Info("notifier plugins ready", "dir", dir, "notifiers", ready)
}

// readSHA256SUMS reads the pins of a checksum file in sha256sum's format
// ("<hex>  <file>", "<hex> *<file>") or its --tag format
// ("SHA256 (<file>) = <hex>"), by plugin name: the file's base name
// without ".exe". Blank lines and lines starting with # are skipped. Every
// other line that is not a pin is an error naming path:line; they are
// returned joined, beside the pins of the good lines. An unreadable file
// returns nil pins and its error (fs.ErrNotExist when there is none).
func readSHA256SUMS(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pins := map[string]string{}
	pinnedAt := map[string]int{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		sum, name, err := parseSumLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, n, err))
			continue
		}
		name = strings.TrimSuffix(path.Base(filepath.ToSlash(name)), ".exe")
		if prev, ok := pinnedAt[name]; ok {
			errs = append(errs, fmt.Errorf("%s:%d: %s is already pinned on line %d", file, n, name, prev))
			continue
		}
		pins[name], pinnedAt[name] = sum, n
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", file, err))
	}
	return pins, errors.Join(errs...)
}

// parseSumLine parses one line of a checksum file into the lower-case hex
// checksum and the file name.
func parseSumLine(line string) (sum, name string, err error) {
	if rest, ok := strings.CutPrefix(line, "SHA256 ("); ok { // sha256sum --tag
		i := strings.LastIndex(rest, ") = ")
		if i < 0 {
			return "", "", errors.New(`want "SHA256 (<file>) = <hex>"`)
		}
		name, sum = rest[:i], strings.TrimSpace(rest[i+len(") = "):])
	} else {
		var ok bool
		sum, name, ok = strings.Cut(line, " ")
		if !ok {
			return "", "", errors.New(`want "<sha256 hex>  <file>" (sha256sum's output)`)
		}
		name = strings.TrimPrefix(strings.TrimLeft(name, " "), "*")
	}
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return "", "", fmt.Errorf("%q is not a SHA-256 (64 hex digits)", sum)
	}
	if name == "" {
		return "", "", errors.New("no file name after the checksum")
	}
	return strings.ToLower(sum), name, nil
}

// envList turns a plugin's env map into KEY=value pairs, sorted by key.
func envList(env map[string]string) []string {
	if len(env) == 0 {
		return nil
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func notifierNames(ns []NotifierPluginConfig) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		if !n.Disabled {
			out = append(out, n.Name)
		}
	}
	return out
}

// joined splits an errors.Join error into its parts.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkPluginPerms logs an error for the plugins folder, each pinned
// binary (symlinks followed) and, when the pins come from it, the
// SHA256SUMS file, if group or others may write it: whoever can write
// them can replace a plugin (and, for SHA256SUMS, its pin too), and the
// aggregator would run it as itself. It refuses nothing; pins in the
// config file (plugins.notifiers) are what hold when the folder is shared.
func checkPluginPerms(log *slog.Logger, dir string, pins map[string]host.PluginConfig, sumsPinned bool) {
	paths := []string{dir}
	if sumsPinned {
		paths = append(paths, filepath.Join(dir, sumsFile))
	}
	names := make([]string, 0, len(pins))
	for name := range pins {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		paths = append(paths, filepath.Join(dir, name))
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue // reported by the host
		}
		if mode := fi.Mode().Perm(); mode&0o022 != 0 && !(fi.IsDir() && fi.Mode()&os.ModeSticky != 0) {
			log.Error("plugin file writable by group or others: whoever can write it can replace a pinned plugin, which the aggregator runs as itself (chmod go-w, or pin the notifiers in the config)",
				"path", p, "mode", fmt.Sprintf("%#o", mode))
		}
	}
}
