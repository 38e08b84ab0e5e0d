package host

import (
	"strings"
	"testing"
)

func TestCheckEnvKey(t *testing.T) {
	for key, want := range map[string]string{
		"HTTPS_PROXY":           "",
		"_x1":                   "",
		"1X":                    "not an environment variable name",
		"bad key":               "not an environment variable name",
		"":                      "not an environment variable name",
		"VMPULSE_PLUGIN":        "reserved for the plugin handshake",
		"VMPULSE_PLUGIN_CONFIG": "reserved for the plugin handshake",
		"PLUGIN_MIN_PORT":       "reserved for the plugin handshake",
		"LD_PRELOAD":            "loader variables are refused",
		"LD_LIBRARY_PATH":       "loader variables are refused",
		"DYLD_INSERT_LIBRARIES": "loader variables are refused",
	} {
		err := CheckEnvKey(key)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckEnvKey(%q) = %v, want %q", key, err, want)
		}
	}
}
