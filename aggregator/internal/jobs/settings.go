package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// Keys of the other runtime settings (PUT /system/settings). Every replica
// reads them from the settings table: the API's authentication within
// seconds (a short cache), backups at the start of each backup.
const (
	// SettingLockout is the account lockout policy (LockoutDoc).
	SettingLockout = "lockout"
	// SettingSessions is the session lifetimes (SessionsDoc).
	SettingSessions = "sessions"
	// SettingBackup is the backup defaults (BackupDoc).
	SettingBackup = "backup"
)

// LockoutDoc is the stored lockout policy: Threshold failed logins in a
// row lock an account for Duration (a Go duration).
type LockoutDoc struct {
	Threshold int    `json:"threshold"`
	Duration  string `json:"duration"`
}

// SessionsDoc is the stored session lifetimes (Go durations): a refresh
// token's lifetime (how long a session survives idle) and a session's
// maximum age however often it is refreshed.
type SessionsDoc struct {
	RefreshTTL string `json:"refresh_ttl"`
	MaxAge     string `json:"max_age"`
}

// BackupDoc is the stored backup defaults: pg_dump's compression level
// (0-9) for every backup, scheduled or on demand.
type BackupDoc struct {
	Compression int `json:"compression"`
}

// SettingMeta is a stored setting's version and last change.
type SettingMeta struct {
	Version   int64
	UpdatedAt time.Time
	UpdatedBy string
}

// ReadSetting decodes the setting key into dst. It reports false (and
// leaves dst alone) when the setting was never stored.
func ReadSetting(ctx context.Context, pool *pgxpool.Pool, key string, dst any) (bool, SettingMeta, error) {
	var raw []byte
	var m SettingMeta
	err := pool.QueryRow(ctx, `SELECT value, version, updated_at, updated_by FROM settings WHERE key = $1`, key).
		Scan(&raw, &m.Version, &m.UpdatedAt, &m.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, m, nil
	}
	if err != nil {
		return false, m, fmt.Errorf("jobs: read setting %s: %w", key, err)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return false, m, fmt.Errorf("jobs: setting %s: %w", key, err)
	}
	m.UpdatedAt = m.UpdatedAt.UTC()
	return true, m, nil
}

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// WriteSetting stores value under key (version + 1), by whom.
func WriteSetting(ctx context.Context, db Execer, key string, value any, by string) error {
	doc, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("jobs: setting %s: %w", key, err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = settings.version + 1, updated_at = now(), updated_by = EXCLUDED.updated_by`,
		key, doc, by); err != nil {
		return fmt.Errorf("jobs: write setting %s: %w", key, err)
	}
	return nil
}
