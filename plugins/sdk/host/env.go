package host

import (
	"errors"
	"regexp"
	"strings"
)

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckEnvKey reports why key may not be set in a plugin's environment
// (PluginConfig.Env), or nil: it must be a variable name, not one the
// handshake uses (VMPULSE_PLUGIN*, PLUGIN_*), and not one of the dynamic
// loader's (LD_*, DYLD_*), which would run code the checksum does not pin.
// Configuration readers call it to name the offending field.
func CheckEnvKey(key string) error {
	switch {
	case !envKeyRE.MatchString(key):
		return errors.New("not an environment variable name")
	case strings.HasPrefix(key, "VMPULSE_PLUGIN"), strings.HasPrefix(key, "PLUGIN_"):
		return errors.New("reserved for the plugin handshake")
	case strings.HasPrefix(key, "LD_"), strings.HasPrefix(key, "DYLD_"):
		return errors.New("loader variables are refused (they run code the sha256 does not pin)")
	}
	return nil
}
