package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// Doc documents a route for the OpenAPI document, which is generated from
// the route table and so cannot drift from it.
type Doc struct {
	Tag     string
	Summary string
	Params  []Param
	// Body is the request body's schema; nil means none.
	Body map[string]any
	// Response is the schema of the envelope's data on success.
	Response map[string]any
	// Status is the success status; 0 means 200.
	Status int
	// CSV marks a text/csv download.
	CSV bool
	// Errors lists the error statuses the route can answer besides 500.
	Errors []int
	// Codes lists the machine codes peculiar to the route that its errors
	// can carry (x-vmpulse-error-codes); the generic ones (validation,
	// AUTH_FORBIDDEN, not found, …) are left out.
	Codes []string
}

// Param is a query parameter.
type Param struct {
	Name        string
	Description string
	Required    bool
}

var (
	pageParams = []Param{
		{Name: "page", Description: "1-based page number"},
		{Name: "page_size", Description: "items per page, 1-500, default 50"},
	}
	cursorParams = []Param{
		{Name: "cursor", Description: "next_cursor of the previous page"},
		{Name: "limit", Description: "items per page, 1-500, default 100"},
	}
)

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func objectSchema(props map[string]any, required ...string) map[string]any {
	if props == nil {
		props = map[string]any{}
	}
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func arrayOf(items map[string]any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}

func listSchema(item map[string]any) map[string]any {
	return objectSchema(map[string]any{"items": arrayOf(item)})
}

func pageSchema(item map[string]any) map[string]any {
	return objectSchema(map[string]any{"items": arrayOf(item), "total": integer, "page": integer, "page_size": integer})
}

func cursorSchema(item map[string]any) map[string]any {
	return objectSchema(map[string]any{"items": arrayOf(item), "next_cursor": desc(str, "empty at the end")})
}

var (
	str      = map[string]any{"type": "string"}
	integer  = map[string]any{"type": "integer"}
	boolean  = map[string]any{"type": "boolean"}
	dateTime = map[string]any{"type": "string", "format": "date-time"}
	uuidStr  = map[string]any{"type": "string", "format": "uuid"}
	strList  = arrayOf(str)
)

// nullable is desc for a value that may be null.
func nullable(s map[string]any, d string) map[string]any {
	out := desc(s, d)
	out["nullable"] = true
	return out
}

func desc(s map[string]any, d string) map[string]any {
	out := map[string]any{"description": d}
	for k, v := range s {
		out[k] = v
	}
	return out
}

// componentSchemas are the named schemas routes refer to.
func componentSchemas() map[string]any {
	scope := objectSchema(map[string]any{"sites": strList, "vm_groups": strList}, "sites", "vm_groups")
	schemas := map[string]any{
		"Envelope": objectSchema(map[string]any{
			"code":    map[string]any{"oneOf": []any{map[string]any{"type": "integer", "enum": []int{0}}, str}, "description": "0 on success, else a stable machine code"},
			"message": desc(str, "localized by Accept-Language (en, zh-CN, ja-JP)"),
			"data":    map[string]any{},
		}, "code", "message", "data"),
		"ErrorData": objectSchema(map[string]any{
			"request_id": str,
			"fields":     arrayOf(ref("FieldError")),
		}, "request_id"),
		"FieldError": objectSchema(map[string]any{"field": desc(str, "JSON path of a body field (\"roles[2]\") or a query parameter name"),
			"code": desc(str, "e.g. required, invalid_type, unknown_field, invalid_format, too_long, out_of_range, invalid_value; "+
				"invalid_text: a string (any body field, member names included, or query value) carries a NUL, bytes that are not UTF-8, "+
				"or an escaped surrogate without its pair (params.reason: nul, invalid_utf8, lone_surrogate)"),
			"message": str, "params": map[string]any{"type": "object"}}, "field", "code", "message"),
		"LoginRequest":    objectSchema(map[string]any{"username": desc(str, "username or email"), "password": str}, "username", "password"),
		"RefreshRequest":  objectSchema(map[string]any{"refresh_token": str}, "refresh_token"),
		"Tokens":          objectSchema(map[string]any{"access_token": str, "token_type": str, "expires_at": dateTime, "refresh_token": str, "refresh_expires_at": dateTime, "session_id": uuidStr}),
		"PasswordChange":  objectSchema(map[string]any{"current_password": str, "new_password": str}, "current_password", "new_password"),
		"PermissionCheck": objectSchema(map[string]any{"permission": str, "allowed": boolean}),
		"Me": objectSchema(map[string]any{"id": uuidStr, "username": str, "email": str, "display_name": str, "roles": strList, "permissions": strList,
			"scope":      objectSchema(map[string]any{"sites": strList, "vm_groups": strList, "unrestricted": boolean}),
			"session_id": uuidStr, "api_token_id": uuidStr}),
		"Scope": scope,
		"User": objectSchema(map[string]any{"id": uuidStr, "username": str, "email": str, "display_name": str, "roles": strList,
			"locked": desc(boolean, "locked by an administrator"), "locked_until": desc(dateTime, "locked out after failed logins until"),
			"failed_logins": integer, "scope": scope, "last_login_at": dateTime, "created_at": dateTime, "updated_at": dateTime}),
		"UserCreate":          objectSchema(map[string]any{"username": str, "email": str, "display_name": str, "password": str, "roles": strList}, "username", "password"),
		"UserUpdate":          objectSchema(map[string]any{"username": str, "email": str, "display_name": str}, "username"),
		"UserRoles":           objectSchema(map[string]any{"roles": strList}, "roles"),
		"PasswordReset":       objectSchema(map[string]any{"password": desc(str, "omit to generate one")}),
		"PasswordResetResult": objectSchema(map[string]any{"generated": boolean, "password": desc(str, "only when generated")}),
		"PermissionList":      objectSchema(map[string]any{"permissions": strList}),
		"Role": objectSchema(map[string]any{"id": uuidStr, "name": str, "description": str, "builtin": boolean, "parents": strList,
			"permissions": strList, "effective_permissions": strList, "users": integer, "created_at": dateTime, "updated_at": dateTime}),
		"RoleCreate":      objectSchema(map[string]any{"name": str, "description": str, "parents": strList, "permissions": strList}, "name"),
		"RoleUpdate":      objectSchema(map[string]any{"name": str, "description": str, "parents": strList}, "name"),
		"RolePermissions": objectSchema(map[string]any{"permissions": strList}, "permissions"),
		"PermissionGroup": objectSchema(map[string]any{"resource": str, "description": str,
			"permissions": arrayOf(objectSchema(map[string]any{"name": str, "description": str}))}),
		"APIToken": objectSchema(map[string]any{"id": uuidStr, "name": str, "prefix": str, "permissions": desc(strList, "empty: all of the owner's"),
			"created_at": dateTime, "expires_at": dateTime, "last_used_at": dateTime, "revoked_at": dateTime}),
		"APITokenCreate":  objectSchema(map[string]any{"name": str, "permissions": strList, "expires_at": dateTime}, "name"),
		"APITokenCreated": objectSchema(map[string]any{"token": desc(str, "the secret, shown once"), "api_token": ref("APIToken")}),
		"AuditRecord": objectSchema(map[string]any{"id": integer, "time": dateTime, "source": str, "actor_type": str, "actor_id": str, "actor_name": str,
			"action": str, "resource_type": str, "resource_id": str, "summary": map[string]any{"type": "object"}, "result": str, "status": integer,
			"ip": str, "user_agent": str, "request_id": str, "latency_us": integer, "hash": desc(str, "base64")}),
		"VerifyResult": objectSchema(map[string]any{"ok": boolean, "checked": integer, "head_seq": integer, "broken_at": integer, "reason": str}),
		"LoginRecord": objectSchema(map[string]any{"id": integer, "time": dateTime, "user_id": str, "username": str, "result": str, "reason": str,
			"ip": str, "user_agent": str, "request_id": str}),
		"Session": objectSchema(map[string]any{"id": uuidStr, "user_id": uuidStr, "username": str, "created_at": dateTime, "last_seen_at": dateTime,
			"expires_at": dateTime, "ip": str, "user_agent": str}),
		"Agent": objectSchema(map[string]any{"id": uuidStr, "name": str, "site": str, "version": str,
			"state":     map[string]any{"type": "string", "enum": []string{AgentConnected, AgentDisconnected, AgentRevoked}},
			"connected": desc(boolean, "has a live connection to an aggregator"), "remote_addr": desc(str, "address of the last connection"),
			"enrolled_at": dateTime, "first_seen": nullable(dateTime, "null until the agent first connects"),
			"last_seen":   nullable(dateTime, "null until the agent first connects"),
			"spool_depth": desc(integer, "batches in the agent's spool not yet acknowledged, at its last heartbeat"), "spool_bytes": integer,
			"oldest_unsent_ms":  desc(integer, "age of the oldest unacknowledged batch"),
			"collection_lag_ms": desc(integer, "now minus the newest collected sample, at the last heartbeat"),
			"dropped_batches":   desc(integer, "batches the agent dropped for its spool quota since it started"),
			"cert_not_after":    desc(dateTime, "when the agent's client certificate expires (it renews before)"),
			"revoked_at":        nullable(dateTime, "null unless revoked"),
			"plugins":           desc(arrayOf(ref("AgentPlugin")), "the agent's collector plugins at its last heartbeat"),
			"spool_max_bytes":   nullable(integer, "the spool's quota (spool.max_bytes) at the last heartbeat; null when the agent does not report it"),
			"vcenters":          desc(arrayOf(ref("AgentVCenter")), "the reachability of each vCenter/ESXi endpoint the agent polls, at its last heartbeat")}),
		"AgentPlugin":  agentPluginSchema(),
		"AgentVCenter": agentVCenterSchema(),
		"EnrollmentTokenCreate": objectSchema(map[string]any{
			"site": desc(str, "site of the new agent, created if new: 1-63 lowercase letters, digits, . _ -"),
			"ttl":  desc(str, "how long the token stays valid, a duration from 1m to 720h; default 24h")}, "site"),
		"EnrollmentToken": objectSchema(map[string]any{"token": desc(str, "the single-use token to give the agent, shown once"),
			"site": str, "expires_at": dateTime}),
	}
	maps.Copy(schemas, inventorySchemas())
	maps.Copy(schemas, historySchemas())
	maps.Copy(schemas, vmGroupSchemas())
	maps.Copy(schemas, pluginSchemas())
	maps.Copy(schemas, realtimeSchemas())
	maps.Copy(schemas, systemSchemas())
	maps.Copy(schemas, jobSchemas())
	maps.Copy(schemas, backupSchemas())
	maps.Copy(schemas, opsHealthSchemas())
	maps.Copy(schemas, settingsSchemas())
	maps.Copy(schemas, alertSchemas())
	return schemas
}

var pathParamRE = regexp.MustCompile(`\{([a-zA-Z_]+)\}`)

// openAPIDocument renders the OpenAPI 3.0 document of /healthz, /readyz,
// /metrics (when enabled) and
// every route of the table.
func (a *API) openAPIDocument() ([]byte, error) {
	paths := map[string]map[string]any{}
	add := func(path, method string, op map[string]any) {
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(method)] = op
	}
	probe := func(summary string) map[string]any {
		return map[string]any{"tags": []string{"system"}, "summary": summary, "security": []any{},
			"responses": map[string]any{"200": envelopeResponse("ok", objectSchema(map[string]any{"status": str})), "503": errorResponse(503)}}
	}
	add("/healthz", "GET", probe("The process is up"))
	add("/readyz", "GET", probe("The database is reachable and migrated"))
	if a.cfg.Metrics.On() {
		op := map[string]any{"tags": []string{"system"}, "summary": "Prometheus metrics (text exposition format)",
			"responses": map[string]any{
				"200": map[string]any{"description": "OK", "content": map[string]any{"text/plain": map[string]any{"schema": str}}},
				"401": errorResponse(401)}}
		switch {
		case a.cfg.Metrics.Auth == MetricsAuthNone:
			op["security"] = []any{}
		case a.cfg.Metrics.TokenFile != "":
			op["security"] = []any{map[string]any{"bearer": []string{}}}
			op["description"] = "The bearer token is the scrape token of http.metrics.token_file."
		default:
			op["security"] = []any{map[string]any{"bearer": []string{}}}
			op["x-vmpulse-permission"] = auth.PermSystemRead
			op["responses"].(map[string]any)["403"] = errorResponse(403)
		}
		add("/metrics", "GET", op)
	}
	for _, rt := range a.routes {
		d := rt.Doc
		op := map[string]any{
			"tags":                 []string{d.Tag},
			"summary":              d.Summary,
			"operationId":          operationID(rt),
			"x-vmpulse-permission": rt.Access,
		}
		switch rt.Access {
		case AccessPublic, AccessRefresh:
			op["security"] = []any{}
		default:
			op["security"] = []any{map[string]any{"bearer": []string{}}}
		}
		if rt.Action != "" {
			op["x-vmpulse-audit-action"] = rt.Action
		}
		if len(d.Codes) > 0 {
			op["x-vmpulse-error-codes"] = d.Codes
		}
		var params []any
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.Pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": str})
		}
		for _, p := range d.Params {
			params = append(params, map[string]any{"name": p.Name, "in": "query", "required": p.Required, "description": p.Description, "schema": str})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if d.Body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": d.Body}}}
		}
		status := d.Status
		if status == 0 {
			status = http.StatusOK
		}
		responses := map[string]any{}
		if d.CSV {
			responses[strconv.Itoa(status)] = map[string]any{"description": "CSV", "content": map[string]any{"text/csv": map[string]any{"schema": str}}}
		} else {
			responses[strconv.Itoa(status)] = envelopeResponse("ok", d.Response)
		}
		for _, code := range append(d.Errors, 500) {
			responses[strconv.Itoa(code)] = errorResponse(code)
		}
		if rt.Method != http.MethodGet {
			responses["400"] = errorResponse(400)
			responses["413"] = errorResponse(413)
		}
		op["responses"] = responses
		add("/api/v1"+rt.Pattern, rt.Method, op)
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "vmpulse API", "version": "1",
			"description": "Every response is the envelope {code, message, data}. Permissions per operation are in x-vmpulse-permission; " +
				"public, refresh_token and authenticated are access levels rather than permissions."},
		"paths": paths,
		"components": map[string]any{
			"schemas":         componentSchemas(),
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "an access token (JWT) or an API token (vmp_…)"}},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func envelopeResponse(description string, data map[string]any) map[string]any {
	if data == nil {
		data = objectSchema(nil)
	}
	return map[string]any{"description": description, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
		"allOf": []any{ref("Envelope"), objectSchema(map[string]any{"data": data})}}}}}
}

func errorResponse(status int) map[string]any {
	return envelopeResponse(http.StatusText(status), ref("ErrorData"))
}

func operationID(rt Route) string {
	s := strings.NewReplacer("/", "_", "{", "", "}", "", "-", "_").Replace(strings.Trim(rt.Pattern, "/"))
	return strings.ToLower(rt.Method) + "_" + s
}

// docsResource serves the OpenAPI document.
type docsResource struct{ a *API }

// Routes lists the documentation route.
func (h *docsResource) Routes() []Route {
	return []Route{{Method: "GET", Pattern: "/openapi.json", Access: AccessPublic, Handle: h.openapi, Doc: Doc{Tag: "system",
		Summary: "This OpenAPI 3 document (not wrapped in the envelope)", Response: objectSchema(nil)}}}
}

func (h *docsResource) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(h.a.openapi)
	return nil
}
