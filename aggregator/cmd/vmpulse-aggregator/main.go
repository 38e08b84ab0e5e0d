// Command vmpulse-aggregator is the central vmpulse service: QUIC ingest
// from agents into PostgreSQL, and the HTTP API.
//
//	vmpulse-aggregator [serve] -config FILE
//	vmpulse-aggregator enroll-token -config FILE -site NAME [-ttl 24h]
//	vmpulse-aggregator user create-admin -config FILE -username NAME -email ADDR [-password-file F]
//	vmpulse-aggregator agent list -config FILE
//	vmpulse-aggregator agent revoke -config FILE [-reason TEXT] AGENT_ID
//	vmpulse-aggregator migrations [-timescale] [-out DIR]
//	vmpulse-aggregator -version   (or: vmpulse-aggregator version)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vmpulse/vmpulse/aggregator"
	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// version and commit are set at build time with -ldflags
// "-X main.version=... -X main.commit=..." (make build, make dist).
var (
	version = "dev"
	commit  = ""
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vmpulse-aggregator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		fmt.Println(versionLine())
		return nil
	}
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args)
	case "enroll-token":
		return enrollToken(args)
	case "user":
		return userCommand(args)
	case "agent":
		return agentCommand(args)
	case "migrations":
		return renderMigrations(args)
	case "version":
		fmt.Println(versionLine())
		return nil
	default:
		return fmt.Errorf("unknown command %q (serve, enroll-token, user, agent, migrations, version)", cmd)
	}
}

func loadConfig(fs *flag.FlagSet, args []string) (aggregator.Config, error) {
	path := fs.String("config", os.Getenv("VMPULSE_CONFIG"), "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "data directory (overrides the file)")
	if err := fs.Parse(args); err != nil {
		return aggregator.Config{}, err
	}
	cfg, err := aggregator.LoadConfig(*path)
	if err != nil {
		return cfg, err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	return cfg, nil
}

// gcPercent is the aggregator's default GOGC. Ingest decodes batches into
// short-lived arrays: at the Go default (100) collection ran the end-to-end
// ingest benchmark at 0.77–0.79 of raw COPY, at 200 at 0.86–0.89. An
// operator's GOGC (or GOMEMLIMIT) still wins.
const gcPercent = 200

func serve(args []string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	level, err := aggregator.ParseLevel(cfg.Log.Level)
	if err != nil {
		return fmt.Errorf("config: log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	base := slog.New(h) // each part adds its own component
	log := base.With("component", "aggregator")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := aggregator.New(ctx, cfg, base)
	if err != nil {
		return err
	}
	log.Info("vmpulse aggregator", "version", version)
	go func() {
		<-ctx.Done()
		// Run drains (ingest: commit and ack what was read, tell the
		// agents it is going away); a second signal kills at once.
		stop()
		log.Info("shutting down: draining; a second signal exits at once")
	}()
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

var siteName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func enrollToken(args []string) error {
	fs := flag.NewFlagSet("enroll-token", flag.ContinueOnError)
	site := fs.String("site", "", "site the agent belongs to (lowercase letters, digits, . _ -)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if !siteName.MatchString(*site) {
		return fmt.Errorf("-site %q: want 1-63 lowercase letters, digits, '.', '_' or '-'", *site)
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return fmt.Errorf("-ttl %s: want between 1s and 720h", *ttl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, exp, err := aggregator.IssueEnrollToken(ctx, cfg, *site, *ttl, "cli")
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "single-use enrollment token for site %q, valid until %s:\n", *site, exp.Format(time.RFC3339))
	fmt.Println(tok)
	return nil
}

// renderMigrations prints (or writes to -out) the SQL the aggregator applies
// at start, for a database with or without TimescaleDB.
func renderMigrations(args []string) error {
	fs := flag.NewFlagSet("migrations", flag.ContinueOnError)
	ts := fs.Bool("timescale", false, "render for a database with the timescaledb extension")
	out := fs.String("out", "", "write one .sql file per migration into this directory instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ms, err := store.RenderMigrations(context.Background(), *ts)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if *out == "" {
			fmt.Printf("-- %s\n%s\n", m.Name, m.SQL)
			continue
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, m.Name), []byte(m.SQL), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// userCommand manages users from the command line; today the first admin.
func userCommand(args []string) error {
	if len(args) == 0 || args[0] != "create-admin" {
		return fmt.Errorf("usage: vmpulse-aggregator user create-admin -config FILE -username NAME -email ADDR [-password-file FILE]")
	}
	fs := flag.NewFlagSet("user create-admin", flag.ContinueOnError)
	username := fs.String("username", "admin", "login name")
	email := fs.String("email", "", "email address (also accepted at login)")
	pwFile := fs.String("password-file", "", "read the password from this file; without it a strong one is generated and printed once")
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
	}
	if *email == "" {
		return fmt.Errorf("-email: required")
	}
	if cfg.DatabaseURL == "" {
		return fmt.Errorf("config: database_url: required (or VMPULSE_DATABASE_URL)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, string(cfg.DatabaseURL), store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return fmt.Errorf("-password-file: %w", err)
		}
		if err := auth.CreateAdmin(ctx, st.Pool(), *username, *email, strings.TrimRight(string(b), "\r\n")); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "admin %q created\n", *username)
		return nil
	}
	pw, err := auth.CreateAdminGenerated(ctx, st.Pool(), *username, *email)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "admin %q created; its password (shown once):\n", *username)
	fmt.Println(pw)
	return nil
}

// agentCommand lists and revokes agents from the command line.
func agentCommand(args []string) error {
	const usage = "usage: vmpulse-aggregator agent list -config FILE | agent revoke -config FILE [-reason TEXT] AGENT_ID"
	if len(args) == 0 || args[0] != "list" && args[0] != "revoke" {
		return errors.New(usage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("agent "+sub, flag.ContinueOnError)
	reason := fs.String("reason", "", "why (kept in the audit log)")
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return fmt.Errorf("config: database_url: required (or VMPULSE_DATABASE_URL)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, string(cfg.DatabaseURL), store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	// The operator at the command line sees every site.
	ctx = store.AllSites(ctx)
	if sub == "list" {
		if fs.NArg() != 0 {
			return errors.New(usage)
		}
		agents, err := st.Agents(ctx)
		if err != nil {
			return err
		}
		return printAgents(os.Stdout, agents, time.Now())
	}
	if fs.NArg() != 1 {
		return errors.New(usage)
	}
	id := fs.Arg(0)
	a, err := st.AgentByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("agent %q: no such agent (see: vmpulse-aggregator agent list)", id)
	}
	if err != nil {
		return err
	}
	if err := st.RevokeAgent(ctx, a.ID); err != nil {
		return err
	}
	// Every serving replica closes the agent's connection now (the
	// heartbeat check would within one interval otherwise).
	if err := ingest.NotifyDisconnect(ctx, st.Pool(), a.ID, "cli"); err != nil {
		fmt.Fprintf(os.Stderr, "warning: the aggregators were not notified (%v); they close the connection at its next heartbeat\n", err)
	}
	w := audit.NewWriter(st.Pool(), audit.WriterOptions{})
	summary, _ := json.Marshal(map[string]string{"name": a.Name, "site": a.Site, "reason": *reason})
	aerr := w.Append(ctx, audit.Record{Source: "system", ActorType: "system", ActorName: "cli", Action: "agent.revoke",
		ResourceType: "agent", ResourceID: a.ID, Summary: summary, Result: "success"})
	if err := w.Close(ctx); aerr == nil {
		aerr = err
	}
	if aerr != nil {
		return fmt.Errorf("agent %s revoked, but the audit record was not written: %w", a.ID, aerr)
	}
	fmt.Fprintf(os.Stderr, "agent %s (%s, site %s) revoked: its certificate is refused from now on, and every aggregator was told to close its connection\n", a.ID, a.Name, a.Site)
	return nil
}

// printAgents writes the registry as a table.
func printAgents(out io.Writer, agents []store.Agent, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSITE\tVERSION\tSTATE\tLAST SEEN\tSPOOL\tCERT EXPIRES")
	for _, a := range agents {
		state := "disconnected"
		switch {
		case a.RevokedAt != nil:
			state = "revoked " + a.RevokedAt.UTC().Format(time.DateOnly)
		case a.Connected:
			state = "connected"
		}
		seen := "never"
		if a.LastSeen != nil {
			seen = now.Sub(*a.LastSeen).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d batches\t%s\n", a.ID, a.Name, a.Site, a.Version, state, seen,
			a.SpoolDepth, a.CertNotAfter.UTC().Format(time.DateOnly))
	}
	return tw.Flush()
}
