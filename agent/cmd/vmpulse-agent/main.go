// Command vmpulse-agent collects from vCenter/ESXi endpoints, keeps every
// batch in a disk spool, and streams it to the aggregator.
//
//	vmpulse-agent -config /etc/vmpulse/agent.yml [-enroll-token TOKEN]
//	vmpulse-agent -version   (or: vmpulse-agent version)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/vmpulse/vmpulse/agent"
)

// version is set at build time with -ldflags "-X main.version=...";
// commit may be too ("-X main.commit=..."), else it comes from the VCS
// stamp the go command embeds (see versionLine).
var (
	version = "dev"
	commit  = ""
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println(versionLine())
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vmpulse-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("vmpulse-agent", flag.ContinueOnError)
	path := fs.String("config", os.Getenv("VMPULSE_AGENT_CONFIG"), "configuration file (YAML)")
	token := fs.String("enroll-token", "", "single-use enrollment token (first start only; prefer VMPULSE_ENROLL_TOKEN)")
	dataDir := fs.String("data-dir", "", "data directory (overrides the file)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file, for performance work")
	showVersion := fs.Bool("version", false, "print the version and commit, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(versionLine())
		return nil
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	cfg, err := agent.LoadConfig(*path)
	if err != nil {
		return err
	}
	if *token != "" {
		cfg.EnrollToken = *token
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	level, err := agent.ParseLevel(cfg.Log.Level)
	if err != nil {
		return fmt.Errorf("config: log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	base := slog.New(h) // each part adds its own component
	log := base.With("component", "agent")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(ctx, cfg, version, base)
	if err != nil {
		return err
	}
	log.Info("vmpulse agent", "version", version, "commit", buildCommit(), "agent", a.Identity().AgentID, "site", a.Identity().Site, "endpoints", len(cfg.Endpoints))
	return a.Run(ctx)
}
