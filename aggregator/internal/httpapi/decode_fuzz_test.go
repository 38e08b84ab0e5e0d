package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// requestBodies are the JSON bodies the API decodes, one fresh value each.
var requestBodies = []func() any{
	func() any { return new(loginRequest) },
	func() any { return new(refreshRequest) },
	func() any { return new(passwordChange) },
	func() any { return new(roleCreate) },
	func() any { return new(rolePermissions) },
	func() any { return new(tokenCreate) },
	func() any { return new(userCreate) },
	func() any { return new(userRoles) },
	func() any { return new(scopeBody) },
	func() any { return new(enrollTokenCreate) },
	func() any { return new(metricsQuery) },
	func() any { return new(vmPatch) },
	func() any { return new(vmBatch) },
	func() any { return new(groupInput) },
	func() any { return new(vmList) },
	func() any { return new(backupCreate) },
	func() any { return new(scheduleInput) },
	func() any { return new(settingsInput) },
}

// FuzzDecodeRequest: the API decodes bodies and query strings from the
// network. Whatever arrives, decoding must not panic and a refusal must be
// a client error (4xx) — never something the error writer would turn into
// a 500 — and a validation refusal must name its fields.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(uint8(0), []byte(`{"username":"alice","password":"x"}`), "page=1&page_size=50&sort=-name,site&state=connected&q=web")
	f.Add(uint8(9), []byte(`{"site":"dc1","ttl":"24h"}`), "from=2026-01-01T00:00:00Z&to=bad&enabled=maybe")
	f.Add(uint8(6), []byte(`{"username":"","email":"x@","password":1}`), "page=-1&page_size=100000&sort=nosuch")
	f.Add(uint8(3), []byte("{\"name\":\"\xff\"}"), "q=%00&site=%ff")
	f.Add(uint8(10), []byte(`{"entities":[{"kind":"vm","id":"vc:vm-1"}],"metrics":["cpu.usage.average"],"step":"5m","from":"2026-01-01T00:00:00Z"}`),
		"metric=cpu.usage.average,mem.usage.average&step=20s&agg=p95&instance=&from=2026-01-01T00:00:00Z")
	f.Add(uint8(11), []byte(`{"labels":{"tier":"web","bad key":"x"},"owner":"a"}`), "group=not-a-uuid&metric=cpu;x&step=0s")
	f.Add(uint8(12), []byte(`{"vms":["vc:vm-1"],"action":"add_to_group","group":"nope"}`), "step=1000000h&agg=median")
	f.Add(uint8(13), []byte(`{"name":"web","rule":{"site":"dc1","name_glob":"web-*","tags":[""],"labels":{"k":"v"}}}`), "instance=%ff")
	f.Add(uint8(10), []byte(`{}`), "of=vms&metric=cpu.ready.percent&step=1h&agg=max")
	f.Fuzz(func(t *testing.T, which uint8, body []byte, rawQuery string) {
		dst := requestBodies[int(which)%len(requestBodies)]()
		r := httptest.NewRequest(http.MethodPost, "/api/v1/x", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		checkClientError(t, "body", decodeJSON(r, dst))

		u := &url.URL{Path: "/api/v1/x", RawQuery: rawQuery}
		qr := httptest.NewRequest(http.MethodGet, "/", nil)
		qr.URL = u
		q := newQuery(qr)
		q.str("q", 200)
		q.str("site", 63)
		q.oneOf("state", AgentConnected, AgentDisconnected, AgentRevoked)
		q.intRange("limit", 10, 1, 100)
		q.time("from")
		q.boolean("enabled")
		q.cursor("cursor")
		q.sort(agentSortFields)
		q.page()
		q.groupID("group")
		q.historyOf(store.KindCluster, q.historyParams(time.Unix(1700000000, 0)))
		checkClientError(t, "query", q.err())
	})
}

func checkClientError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	e := errorFor(err)
	if e.Status < 400 || e.Status > 499 {
		t.Fatalf("%s: %v became status %d, want a 4xx", what, err, e.Status)
	}
	if e.Status == http.StatusUnprocessableEntity && len(e.Fields) == 0 {
		t.Fatalf("%s: 422 without field errors: %v", what, err)
	}
}
