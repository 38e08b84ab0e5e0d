package httpapi

import (
	"strings"
	"testing"
)

// TestSystemPlugins: without a plugin directory the list is empty and says
// so; system:read is needed. (The host's own tests cover the fields with
// real plugin subprocesses.)
func TestSystemPlugins(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/api/v1/system/plugins", e.tokens["admin"], "")
	if res.status != 200 || !strings.Contains(string(res.raw), `"configured":false`) || !strings.Contains(string(res.raw), `"items":[]`) {
		t.Errorf("plugins = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/system/plugins", e.tokens["viewer"], ""); res.status != 403 {
		t.Errorf("plugins for a viewer = %d", res.status)
	}
}
