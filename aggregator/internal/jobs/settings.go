package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// SettingRetention is the key of the retention tiers in the settings table
// (PUT /system/settings). Its value overrides the configuration file's
// retention; the retention job reads it at every run, so a change applies
// on every replica without a restart.
const SettingRetention = "retention"

// RetentionDoc is the stored form of the retention tiers: durations as Go
// writes them ("336h0m0s"; "0s" keeps a tier forever).
type RetentionDoc struct {
	Raw string `json:"raw"`
	R5m string `json:"5m"`
	R1h string `json:"1h"`
	R1d string `json:"1d"`
}

// DocOf writes r as a RetentionDoc.
func DocOf(r store.Retention) RetentionDoc {
	return RetentionDoc{Raw: r.Raw.String(), R5m: r.R5m.String(), R1h: r.R1h.String(), R1d: r.R1d.String()}
}

// Retention parses the document.
func (d RetentionDoc) Retention() (store.Retention, error) {
	var r store.Retention
	for _, f := range []struct {
		s   string
		dst *time.Duration
	}{{d.Raw, &r.Raw}, {d.R5m, &r.R5m}, {d.R1h, &r.R1h}, {d.R1d, &r.R1d}} {
		v, err := time.ParseDuration(f.s)
		if err != nil {
			return r, fmt.Errorf("jobs: retention setting: %w", err)
		}
		*f.dst = v
	}
	return r, nil
}

// StoredRetention returns the retention of the settings table, or fallback
// (the configuration's) when none was set.
func StoredRetention(ctx context.Context, pool *pgxpool.Pool, fallback store.Retention) (store.Retention, error) {
	var raw []byte
	err := pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, SettingRetention).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return fallback, nil
	}
	if err != nil {
		return fallback, fmt.Errorf("jobs: read retention setting: %w", err)
	}
	var d RetentionDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return fallback, fmt.Errorf("jobs: retention setting: %w", err)
	}
	return d.Retention()
}
