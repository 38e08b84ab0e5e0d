package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Config is promexec's configuration: the `config` mapping of its entry in
// the agent's config (sdk.EnvConfig).
type Config struct {
	// Command is run on every collection (argv, no shell); its stdout is
	// the Prometheus text exposition format. Exactly one of Command and
	// URL.
	Command []string `json:"command"`
	// URL is fetched with GET on every collection; its host must be a
	// loopback address or "localhost" (an exporter on the agent's
	// machine).
	URL string `json:"url"`
	// Timeout bounds one run or fetch (default 10s; keep it below the
	// agent's per-call timeout for the plugin).
	Timeout string `json:"timeout"`
	// Interval is the collection interval the plugin describes (default
	// 60s; the agent's `interval` overrides it).
	Interval string `json:"interval"`
	// Include keeps only the metric families whose name matches this
	// regular expression (default: all).
	Include string `json:"include"`
	// EntityKind and EntityID bind the samples to an entity ("host",
	// "host-42"); by default they are the agent's site's.
	EntityKind string `json:"entity_kind"`
	EntityID   string `json:"entity_id"`
	// MaxBytes bounds the exposition read (default 16 MiB).
	MaxBytes int64 `json:"max_bytes"`
}

// source is a validated Config.
type source struct {
	cmd      []string
	url      string
	timeout  time.Duration
	interval time.Duration
	include  *regexp.Regexp
	entity   sdk.Entity
	maxBytes int64
	client   *http.Client
}

func field(name, msg string, args ...any) sdk.FieldError {
	return sdk.FieldError{Field: name, Message: fmt.Sprintf(msg, args...)}
}

// newSource checks c, naming each bad field.
func newSource(c Config) (*source, error) {
	var errs []sdk.FieldError
	s := &source{cmd: c.Command, url: c.URL, timeout: 10 * time.Second, interval: time.Minute, maxBytes: 16 << 20,
		entity: sdk.Entity{Kind: c.EntityKind, ID: c.EntityID}}
	switch {
	case len(c.Command) == 0 && c.URL == "":
		errs = append(errs, field("command", "set command (argv) or url"))
	case len(c.Command) > 0 && c.URL != "":
		errs = append(errs, field("url", "set either command or url, not both"))
	case len(c.Command) > 0 && c.Command[0] == "":
		errs = append(errs, field("command", "the program (command[0]) is empty"))
	case c.URL != "":
		if err := checkLocalURL(c.URL); err != nil {
			errs = append(errs, field("url", "%v", err))
		}
	}
	for _, d := range []struct {
		name, v string
		dst     *time.Duration
	}{{"timeout", c.Timeout, &s.timeout}, {"interval", c.Interval, &s.interval}} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil || v < 100*time.Millisecond || v > 24*time.Hour {
			errs = append(errs, field(d.name, "%q: want a duration from 100ms to 24h, e.g. 30s", d.v))
			continue
		}
		*d.dst = v
	}
	if c.Include != "" {
		re, err := regexp.Compile(c.Include)
		if err != nil {
			errs = append(errs, field("include", "%v", err))
		}
		s.include = re
	}
	if (c.EntityKind == "") != (c.EntityID == "") {
		errs = append(errs, field("entity_id", "set entity_kind and entity_id together"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, field("max_bytes", "negative"))
	} else if c.MaxBytes > 0 {
		s.maxBytes = c.MaxBytes
	}
	if len(errs) > 0 {
		return nil, &sdk.ValidationError{Fields: errs}
	}
	s.client = &http.Client{Timeout: s.timeout, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		return checkLocalURL(req.URL.String())
	}}
	return s, nil
}

// checkLocalURL accepts http(s) URLs on the loopback interface only.
func checkLocalURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: want http:// or https://", redactURL(raw))
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q: the host must be localhost or a loopback address (promexec reads local exporters only)", redactURL(raw))
}

// redactURL is raw for errors, which reach the agent's heartbeat and the
// API: without a password and without the query (it may carry a token).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment = ""
	return u.Redacted()
}

// read returns the exposition, from the command or the URL.
func (s *source) read(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.url != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "text/plain;version=0.0.4")
		resp, err := s.client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its text repeats the URL, query included
			}
			return nil, fmt.Errorf("GET %s: %w", redactURL(s.url), err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", redactURL(s.url), resp.Status)
		}
		return readLimited(resp.Body, s.maxBytes)
	}
	cmd := exec.CommandContext(ctx, s.cmd[0], s.cmd[1:]...)
	cmd.WaitDelay = time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", s.cmd[0], err)
	}
	b, rerr := readLimited(out, s.maxBytes)
	if rerr != nil {
		_ = cmd.Process.Kill()
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("run %s: no output within %s", s.cmd[0], s.timeout)
	case rerr != nil:
		return nil, fmt.Errorf("run %s: %w", s.cmd[0], rerr)
	case werr != nil:
		return nil, fmt.Errorf("run %s: %w: %s", s.cmd[0], werr, bytes.TrimSpace(stderr.Bytes()))
	}
	return b, nil
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("the exposition exceeds max_bytes (%d)", max)
	}
	return b, nil
}

// tailBuffer keeps the last 2 KB written to it (a command's stderr).
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.b }

// parse reads the text exposition format into families, keeping those
// Include matches.
func (s *source) parse(b []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse the exposition: %w", err)
	}
	for name := range fams {
		if s.include != nil && !s.include.MatchString(name) {
			delete(fams, name)
		}
	}
	return fams, nil
}

// series lists what a family produces: one series for a counter, gauge or
// untyped metric; quantiles, _sum and _count for a summary; _bucket, _sum
// and _count for a histogram.
func series(f *dto.MetricFamily) []sdk.Series {
	name, help := f.GetName(), f.GetHelp()
	unit := unitOf(name)
	one := func(n, typ, u string) sdk.Series {
		return sdk.Series{Name: n, Unit: u, Description: help, Type: typ}
	}
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return []sdk.Series{one(name, sdk.Counter, unit)}
	case dto.MetricType_SUMMARY:
		return []sdk.Series{one(name, sdk.Gauge, unit), one(name+"_sum", sdk.Counter, unit), one(name+"_count", sdk.Counter, "1")}
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return []sdk.Series{one(name+"_bucket", sdk.Counter, "1"), one(name+"_sum", sdk.Counter, unit), one(name+"_count", sdk.Counter, "1")}
	}
	return []sdk.Series{one(name, sdk.Gauge, unit)}
}

// unitOf infers a unit from the Prometheus naming conventions' suffixes.
func unitOf(name string) string {
	name = strings.TrimSuffix(name, "_total")
	for _, u := range []struct{ suffix, unit string }{
		{"_seconds", "s"}, {"_bytes", "By"}, {"_celsius", "Cel"}, {"_ratio", "1"}, {"_percent", "%"},
		{"_volts", "V"}, {"_amperes", "A"}, {"_watts", "W"}, {"_joules", "J"}, {"_hertz", "Hz"}, {"_rpm", "rpm"},
	} {
		if strings.HasSuffix(name, u.suffix) {
			return u.unit
		}
	}
	return ""
}

// samples turns families into samples at now (or the exposition's own
// timestamps).
func (s *source) samples(fams map[string]*dto.MetricFamily, now time.Time) []sdk.Sample {
	var out []sdk.Sample
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		f := fams[name]
		for _, m := range f.GetMetric() {
			t := now
			if ms := m.GetTimestampMs(); ms != 0 {
				t = time.UnixMilli(ms)
			}
			labels := make(map[string]string, len(m.GetLabel())+1)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(series string, v float64, extra ...string) {
				ls := labels
				if len(extra) == 2 {
					ls = make(map[string]string, len(labels)+1)
					for k, v := range labels {
						ls[k] = v
					}
					ls[extra[0]] = extra[1]
				}
				if len(ls) == 0 {
					ls = nil
				}
				out = append(out, sdk.Sample{Series: series, Entity: s.entity, Labels: ls, Time: t, Value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				for _, q := range sm.GetQuantile() {
					add(name, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
				}
				add(name+"_sum", sm.GetSampleSum())
				add(name+"_count", float64(sm.GetSampleCount()))
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
				}
				add(name+"_sum", h.GetSampleSum())
				add(name+"_count", float64(h.GetSampleCount()))
			default:
				add(name, m.GetUntyped().GetValue())
			}
		}
	}
	return out
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// collector is the sdk.Collector.
type collector struct{ src *source }

func (c *collector) Describe(ctx context.Context) (sdk.Description, error) {
	b, err := c.src.read(ctx)
	if err != nil {
		return sdk.Description{}, err
	}
	fams, err := c.src.parse(b)
	if err != nil {
		return sdk.Description{}, err
	}
	d := sdk.Description{Interval: c.src.interval}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, s := range series(fams[n]) {
			s.EntityKind = c.src.entity.Kind
			d.Series = append(d.Series, s)
		}
	}
	return d, nil
}

func (c *collector) Collect(ctx context.Context, since time.Time) ([]sdk.Sample, error) {
	now := time.Now()
	b, err := c.src.read(ctx)
	if err != nil {
		return nil, err
	}
	fams, err := c.src.parse(b)
	if err != nil {
		return nil, err
	}
	out := c.src.samples(fams, now)
	if !since.IsZero() {
		out = slices.DeleteFunc(out, func(s sdk.Sample) bool { return !s.Time.After(since) })
	}
	return out, nil
}

// errNoConfig explains a plugin started without its config.
var errNoConfig = errors.New("promexec: no config: set `config: {command: [...]}` or `config: {url: ...}` in the plugin's entry of the agent's config")
