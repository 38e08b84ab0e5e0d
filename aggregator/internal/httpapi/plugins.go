package httpapi

import (
	"net/http"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
)

// PluginStatus reports the plugins this aggregator runs (the plugin host).
type PluginStatus interface {
	Status() []host.Status
}

// pluginsResource is GET /system/plugins.
type pluginsResource struct{ a *API }

// Routes lists the plugin routes.
func (h *pluginsResource) Routes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/system/plugins", Access: auth.PermSystemRead, Handle: h.list, Doc: Doc{Tag: "system",
			Summary: "The plugins this aggregator runs: version, state, restarts, last error, calls and latency (p50/p99 of the last 1,024 calls); " +
				"configured is false when no plugin directory is installed",
			Response: ref("PluginList"), Errors: []int{401, 403}}},
	}
}

func (h *pluginsResource) list(w http.ResponseWriter, r *http.Request) error {
	items := []host.Status{}
	if h.a.plugins != nil {
		items = append(items, h.a.plugins.Status()...)
	}
	writeData(w, r, http.StatusOK, map[string]any{"configured": h.a.plugins != nil, "items": items})
	return nil
}

// pluginSchemas are the OpenAPI schemas of GET /system/plugins.
func pluginSchemas() map[string]any {
	return map[string]any{
		"PluginList": objectSchema(map[string]any{
			"configured": boolean,
			"items": arrayOf(objectSchema(map[string]any{
				"name": str, "path": str, "sha256": str, "version": str, "description": str, "kinds": strList,
				"protocol_version": integer, "state": desc(str, "starting, running, restarting, refused or stopped"),
				"pid": integer, "started_at": dateTime, "restarts": integer, "last_error": str, "last_error_at": dateTime,
				"calls": integer, "errors": integer, "timeouts": integer, "unavailable": integer, "in_flight": integer,
				"p50_ms": map[string]any{"type": "number"}, "p99_ms": map[string]any{"type": "number"},
			})),
		}),
	}
}
