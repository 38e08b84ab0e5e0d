package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Channel is a notification channel: a notifier plugin (Type) and its
// config. Secrets are write-only: they are merged into the config only
// when a notification is sent (SendConfig) and never read back otherwise;
// SecretKeys names the ones set.
type Channel struct {
	ID         uuid.UUID       `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Config     json.RawMessage `json:"config"`
	SecretKeys []string        `json:"secret_keys"`
	Locale     string          `json:"locale"`
	Enabled    bool            `json:"enabled"`
	// RatePerMinute and RatePerSecond limit the notifications sent to the
	// channel (nil: the default of its type, see DefaultRates; 0: no
	// limit). Beyond them, the outbox holds the channel's notifications
	// and merges them into one digest.
	RatePerMinute *int      `json:"rate_per_minute"`
	RatePerSecond *int      `json:"rate_per_second"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	CreatedBy     string    `json:"created_by"`
}

// ChannelInput creates or replaces a channel. Secrets nil keeps the
// channel's secrets on an update; an empty object clears them.
type ChannelInput struct {
	Name    string
	Type    string
	Config  json.RawMessage
	Secrets map[string]any
	Locale  string
	Enabled bool
	// RatePerMinute and RatePerSecond: nil takes the type's default.
	RatePerMinute, RatePerSecond *int
}

// Rates is a channel's send limit: at most PerMinute notifications in any
// 60 seconds and PerSecond in any second (0: no limit).
type Rates struct{ PerMinute, PerSecond int }

// DefaultRates are the chat robots' published limits: DingTalk and WeCom
// 20 messages a minute, Feishu 100 a minute and 5 a second. Other types
// have none.
var DefaultRates = map[string]Rates{
	"dingtalk": {PerMinute: 20},
	"wecom":    {PerMinute: 20},
	"feishu":   {PerMinute: 100, PerSecond: 5},
}

// Rates returns the limits in force for the channel.
func (c *Channel) Rates() Rates {
	r := DefaultRates[c.Type]
	if c.RatePerMinute != nil {
		r.PerMinute = *c.RatePerMinute
	}
	if c.RatePerSecond != nil {
		r.PerSecond = *c.RatePerSecond
	}
	return r
}

var channelTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Locales a channel may speak.
var Locales = []string{"en", "zh-CN", "ja-JP"}

// Validate checks a channel input.
func (in *ChannelInput) Validate() error {
	v := &ValidationError{}
	switch {
	case in.Name == "":
		v.add("name", FieldRequired, nil)
	case utf8.RuneCountInString(in.Name) > 128:
		v.add("name", FieldTooLong, map[string]any{"max": 128})
	}
	if in.Type == "" {
		v.add("type", FieldRequired, nil)
	} else if !channelTypeRE.MatchString(in.Type) {
		v.add("type", FieldInvalidFormat, map[string]any{"format": "a notifier plugin name (webhook, email, dingtalk, ...)"})
	}
	if len(bytes.TrimSpace(in.Config)) == 0 {
		in.Config = json.RawMessage("{}")
	}
	var obj map[string]any
	if err := json.Unmarshal(in.Config, &obj); err != nil || obj == nil {
		v.add("config", FieldInvalidValue, map[string]any{"allowed": "a JSON object"})
	} else if len(in.Config) > 64<<10 {
		v.add("config", FieldTooLong, map[string]any{"max": 64 << 10})
	}
	if in.Locale == "" {
		in.Locale = "en"
	} else if !slices.Contains(Locales, in.Locale) {
		v.add("locale", FieldInvalidValue, map[string]any{"allowed": "en, zh-CN, ja-JP"})
	}
	if in.RatePerMinute != nil && (*in.RatePerMinute < 0 || *in.RatePerMinute > 100000) {
		v.add("rate_per_minute", FieldOutOfRange, map[string]any{"min": 0, "max": 100000})
	}
	if in.RatePerSecond != nil && (*in.RatePerSecond < 0 || *in.RatePerSecond > 10000) {
		v.add("rate_per_second", FieldOutOfRange, map[string]any{"min": 0, "max": 10000})
	}
	for k := range in.Secrets {
		if !labelKeyRE.MatchString(k) {
			v.add("secrets."+k, FieldInvalidFormat, map[string]any{"format": "a letter or _, then letters, digits or _"})
		}
	}
	return v.err()
}

const channelCols = `id, name, type, config, ARRAY(SELECT jsonb_object_keys(secrets) ORDER BY 1), locale, enabled, created_at, updated_at, created_by,
	rate_per_minute, rate_per_second`

func scanChannel(row pgx.Row) (Channel, error) {
	var c Channel
	var cfg []byte
	if err := row.Scan(&c.ID, &c.Name, &c.Type, &cfg, &c.SecretKeys, &c.Locale, &c.Enabled, &c.CreatedAt, &c.UpdatedAt, &c.CreatedBy,
		&c.RatePerMinute, &c.RatePerSecond); err != nil {
		return c, err
	}
	c.Config = cfg
	if c.SecretKeys == nil {
		c.SecretKeys = []string{}
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, nil
}

// ListChannels lists the channels by name (without secrets).
func (d *DB) ListChannels(ctx context.Context) ([]Channel, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+channelCols+` FROM notification_channels ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("alert: channels: %w", err)
	}
	defer rows.Close()
	out := []Channel{}
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, fmt.Errorf("alert: channels: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Channel reads one channel (without secrets).
func (d *DB) Channel(ctx context.Context, id uuid.UUID) (Channel, error) {
	c, err := scanChannel(d.pool.QueryRow(ctx, `SELECT `+channelCols+` FROM notification_channels WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("alert: channel %s: %w", id, err)
	}
	return c, nil
}

// SendConfig returns the channel with its config and secrets merged, as
// the notifier receives it. Only the dispatcher and the channel test use it.
func (d *DB) SendConfig(ctx context.Context, id uuid.UUID) (Channel, error) {
	var cfg, sec []byte
	c, err := d.Channel(ctx, id)
	if err != nil {
		return c, err
	}
	if err := d.pool.QueryRow(ctx, `SELECT config, secrets FROM notification_channels WHERE id = $1`, id).Scan(&cfg, &sec); err != nil {
		return c, fmt.Errorf("alert: channel %s: %w", id, err)
	}
	c.Config, err = mergeSecrets(cfg, sec)
	return c, err
}

func mergeSecrets(cfg, sec []byte) (json.RawMessage, error) {
	var a, b map[string]any
	if err := json.Unmarshal(cfg, &a); err != nil {
		return nil, fmt.Errorf("alert: channel config: %w", err)
	}
	if err := json.Unmarshal(sec, &b); err != nil {
		return nil, fmt.Errorf("alert: channel secrets: %w", err)
	}
	if a == nil {
		a = map[string]any{}
	}
	maps.Copy(a, b)
	return json.Marshal(a)
}

// CreateChannel validates and stores a channel.
func (d *DB) CreateChannel(ctx context.Context, in ChannelInput, by string) (uuid.UUID, error) {
	if err := in.Validate(); err != nil {
		return uuid.Nil, err
	}
	if in.Secrets == nil {
		in.Secrets = map[string]any{}
	}
	id := uuid.New()
	_, err := d.pool.Exec(ctx, `INSERT INTO notification_channels (id, name, type, config, secrets, locale, enabled, created_by, rate_per_minute, rate_per_second)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, id, in.Name, in.Type, []byte(in.Config), in.Secrets, in.Locale, in.Enabled, by,
		in.RatePerMinute, in.RatePerSecond)
	if isUnique(err) {
		return uuid.Nil, ErrNameTaken
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("alert: create channel: %w", err)
	}
	return id, nil
}

// UpdateChannel replaces a channel (its secrets only when in.Secrets is
// not nil).
func (d *DB) UpdateChannel(ctx context.Context, id uuid.UUID, in ChannelInput) error {
	if err := in.Validate(); err != nil {
		return err
	}
	var sec any
	if in.Secrets != nil {
		sec = in.Secrets
	}
	tag, err := d.pool.Exec(ctx, `UPDATE notification_channels SET name = $2, type = $3, config = $4, secrets = coalesce($5, secrets),
		locale = $6, enabled = $7, rate_per_minute = $8, rate_per_second = $9, updated_at = now() WHERE id = $1`,
		id, in.Name, in.Type, []byte(in.Config), sec, in.Locale, in.Enabled, in.RatePerMinute, in.RatePerSecond)
	if isUnique(err) {
		return ErrNameTaken
	}
	if err != nil {
		return fmt.Errorf("alert: update channel: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteChannel deletes a channel no rule names (ErrInUse otherwise); its
// queued notifications go with it.
func (d *DB) DeleteChannel(ctx context.Context, id uuid.UUID) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM alert_rules WHERE spec->'channels' ? $1)`, id.String()).Scan(&used); err != nil {
			return err
		}
		if used {
			return ErrInUse
		}
		tag, err := tx.Exec(ctx, `DELETE FROM notification_channels WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
}
