package auth

import (
	"errors"
	"fmt"
	"time"
)

// Config is the authentication policy. The zero value of a field means its
// default (see Defaults).
type Config struct {
	// Issuer and Audience are written into and required of every access
	// token.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Algorithm is the only JWT signing algorithm accepted: "EdDSA"
	// (Ed25519) or "ES256".
	Algorithm string `yaml:"algorithm"`
	// AccessTTL is an access token's lifetime.
	AccessTTL time.Duration `yaml:"access_ttl"`
	// RefreshTTL is a refresh token's lifetime; each refresh issues a new
	// one.
	RefreshTTL time.Duration `yaml:"refresh_ttl"`
	// SessionMaxAge bounds a session however often it is refreshed.
	SessionMaxAge time.Duration `yaml:"session_max_age"`
	// KeyRotation is how long a signing key signs before a new one is made.
	KeyRotation time.Duration `yaml:"key_rotation"`
	// LockoutThreshold failed logins in a row lock an account for
	// LockoutDuration.
	LockoutThreshold int           `yaml:"lockout_threshold"`
	LockoutDuration  time.Duration `yaml:"lockout_duration"`
	// LoginRate is the sustained number of login attempts per second allowed
	// from one client address, with bursts of LoginBurst.
	LoginRate  float64 `yaml:"login_rate"`
	LoginBurst int     `yaml:"login_burst"`
}

// Defaults returns the default policy.
func Defaults() Config {
	return Config{
		Issuer:           "vmpulse",
		Audience:         "vmpulse-api",
		Algorithm:        "EdDSA",
		AccessTTL:        15 * time.Minute,
		RefreshTTL:       12 * time.Hour,
		SessionMaxAge:    7 * 24 * time.Hour,
		KeyRotation:      24 * time.Hour,
		LockoutThreshold: 5,
		LockoutDuration:  30 * time.Minute,
		LoginRate:        1,
		LoginBurst:       10,
	}
}

// WithDefaults fills zero fields from Defaults.
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.Issuer == "" {
		c.Issuer = d.Issuer
	}
	if c.Audience == "" {
		c.Audience = d.Audience
	}
	if c.Algorithm == "" {
		c.Algorithm = d.Algorithm
	}
	if c.AccessTTL == 0 {
		c.AccessTTL = d.AccessTTL
	}
	if c.RefreshTTL == 0 {
		c.RefreshTTL = d.RefreshTTL
	}
	if c.SessionMaxAge == 0 {
		c.SessionMaxAge = d.SessionMaxAge
	}
	if c.KeyRotation == 0 {
		c.KeyRotation = d.KeyRotation
	}
	if c.LockoutThreshold == 0 {
		c.LockoutThreshold = d.LockoutThreshold
	}
	if c.LockoutDuration == 0 {
		c.LockoutDuration = d.LockoutDuration
	}
	if c.LoginRate == 0 {
		c.LoginRate = d.LoginRate
	}
	if c.LoginBurst == 0 {
		c.LoginBurst = d.LoginBurst
	}
	return c
}

// Validate reports every invalid field, each error naming it.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.Issuer == "" {
		bad("issuer", "must not be empty")
	}
	if c.Audience == "" {
		bad("audience", "must not be empty")
	}
	if c.Algorithm != "EdDSA" && c.Algorithm != "ES256" {
		bad("algorithm", "must be EdDSA or ES256, got %q", c.Algorithm)
	}
	if c.AccessTTL < time.Minute || c.AccessTTL > time.Hour {
		bad("access_ttl", "must be between 1m and 1h, got %s", c.AccessTTL)
	}
	if c.RefreshTTL < c.AccessTTL {
		bad("refresh_ttl", "must be at least access_ttl (%s), got %s", c.AccessTTL, c.RefreshTTL)
	}
	if c.SessionMaxAge < c.RefreshTTL {
		bad("session_max_age", "must be at least refresh_ttl (%s), got %s", c.RefreshTTL, c.SessionMaxAge)
	}
	if c.KeyRotation < c.AccessTTL {
		bad("key_rotation", "must be at least access_ttl (%s), got %s", c.AccessTTL, c.KeyRotation)
	}
	if c.LockoutThreshold < 1 {
		bad("lockout_threshold", "must be at least 1, got %d", c.LockoutThreshold)
	}
	if c.LockoutDuration <= 0 {
		bad("lockout_duration", "must be positive, got %s", c.LockoutDuration)
	}
	if c.LoginRate <= 0 {
		bad("login_rate", "must be positive, got %g", c.LoginRate)
	}
	if c.LoginBurst < 1 {
		bad("login_burst", "must be at least 1, got %d", c.LoginBurst)
	}
	return errors.Join(errs...)
}
