package httpapi

import (
	"context"
	"strings"
	"testing"
)

// TestHostileBytesEveryRoute is generated from the route table: every
// route, called by an administrator with a NUL and invalid UTF-8 in its
// path id, its query and its body, answers a client error (never a 5xx),
// and every mutating route writes its audit record anyway.
func TestHostileBytesEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	admin := e.tokens["admin"]
	mutating := 0
	for _, rt := range e.api.routeTable() {
		if rt.Stream || rt.Access == AccessPublic && rt.Method == "GET" {
			continue // long-lived streams; public documents take no input
		}
		path := "/api/v1" + strings.ReplaceAll(rt.Pattern, "{id}", "%00%ff%fe") + "?q=%00&from=%ff&site=%00&metric=%ff"
		body := ""
		if rt.mutating() || rt.Query {
			body = "{\"name\":\"a\u0000b\",\"id\":\"\xff\xfe\",\"username\":\"\u0000\"}"
		}
		if rt.mutating() {
			mutating++
		}
		res := e.do(rt.Method, path, admin, body, "User-Agent", "ua\xff\x00")
		if res.status >= 500 {
			t.Errorf("%s %s = %d %.300s", rt.Method, rt.Pattern, res.status, res.raw)
		}
	}
	e.flushAudit()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE user_agent LIKE 'ua\\xff%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d mutating routes, %d audit records with the hostile user agent", mutating, n)
	if mutating < 40 || n < mutating {
		t.Errorf("%d audit records with the hostile user agent, want one per mutating route (%d)", n, mutating)
	}
}
