package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// DecodeConfig decodes a channel's config into v strictly: an unknown field
// or a value of the wrong type is a *ValidationError naming the field, so
// that a typo in a config is refused rather than silently ignored.
func DecodeConfig(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(new(json.RawMessage)) != io.EOF {
			return &ValidationError{Fields: []FieldError{{Field: "", Message: "trailing data after the config object"}}}
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return &ValidationError{Fields: []FieldError{{Field: typeErr.Field, Message: fmt.Sprintf("want %s, got %s", typeErr.Type, typeErr.Value)}}}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &ValidationError{Fields: []FieldError{{Field: "", Message: "not JSON: the config ends early"}}}
	case errors.As(err, &syntaxErr):
		return &ValidationError{Fields: []FieldError{{Field: "", Message: fmt.Sprintf("not JSON: %v (at byte %d)", err, syntaxErr.Offset)}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ValidationError{Fields: []FieldError{{Field: field, Message: "unknown field"}}}
	}
	return &ValidationError{Fields: []FieldError{{Field: "", Message: err.Error()}}}
}

// EnvConfig is the environment variable through which the agent hands a
// collector plugin the `config` mapping of its entry in the agent's
// config, as JSON. Read it with CollectorConfig.
const EnvConfig = "VMPULSE_PLUGIN_CONFIG"

// CollectorConfig decodes the collector's config (EnvConfig; an absent
// variable is an empty config) into v strictly, like DecodeConfig.
func CollectorConfig(v any) error {
	return DecodeConfig(json.RawMessage(os.Getenv(EnvConfig)), v)
}
