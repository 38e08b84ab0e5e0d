package httpapi

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// auditResource is /audit-logs (operation log) and /login-logs.
type auditResource struct{ a *API }

// Routes lists the operation-log and login-log routes.
func (h *auditResource) Routes() []Route {
	filters := []Param{
		{Name: "actor", Description: "actor name"},
		{Name: "source", Description: "api (the REST API), vcenter (events forwarded by agents) or system (the aggregator's own work)"},
		{Name: "action", Description: `action, or a prefix ending in "." (e.g. "user.")`},
		{Name: "resource_type"}, {Name: "resource_id"},
		{Name: "result", Description: "success, failure or denied"},
		{Name: "from", Description: "RFC 3339, inclusive"}, {Name: "to", Description: "RFC 3339, exclusive"},
	}
	loginFilters := []Param{
		{Name: "user", Description: "username (as attempted)"},
		{Name: "result", Description: "success or failure"},
		{Name: "ip"},
		{Name: "from", Description: "RFC 3339, inclusive"}, {Name: "to", Description: "RFC 3339, exclusive"},
	}
	return []Route{
		{Method: "GET", Pattern: "/audit-logs", Access: auth.PermAuditRead, Handle: h.list, Doc: Doc{Tag: "audit",
			Summary: "Query the operation log, newest first", Params: append(filters, cursorParams...),
			Response: cursorSchema(ref("AuditRecord")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/audit-logs/export", Access: auth.PermAuditRead, Export: true, Handle: h.export, Doc: Doc{Tag: "audit",
			Summary: "Export the operation log as CSV (streamed)", Params: filters, CSV: true, Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/audit-logs/verify", Access: auth.PermAuditRead, Export: true, Handle: h.verify, Doc: Doc{Tag: "audit",
			Summary: "Verify the hash chain and report the first broken link", Response: ref("VerifyResult"), Errors: []int{401, 403}}},
		{Method: "GET", Pattern: "/audit-logs/{id}", Access: auth.PermAuditRead, Handle: h.get, Doc: Doc{Tag: "audit",
			Summary: "Get one operation-log record", Response: ref("AuditRecord"), Errors: []int{401, 403, 404}}},
		{Method: "GET", Pattern: "/login-logs", Access: auth.PermAuditRead, Handle: h.listLogins, Doc: Doc{Tag: "audit",
			Summary: "Query the login log, newest first", Params: append(loginFilters, cursorParams...),
			Response: cursorSchema(ref("LoginRecord")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/login-logs/export", Access: auth.PermAuditRead, Export: true, Handle: h.exportLogins, Doc: Doc{Tag: "audit",
			Summary: "Export the login log as CSV (streamed)", Params: loginFilters, CSV: true, Errors: []int{401, 403, 422}}},
	}
}

func auditFilter(q *query) audit.Filter {
	return audit.Filter{
		Actor: q.str("actor", 256), Source: q.oneOf("source", "api", audit.SourceVCenter, "system"), Action: q.str("action", 128), ResourceType: q.str("resource_type", 64),
		ResourceID: q.str("resource_id", 256), Result: q.oneOf("result", audit.ResultSuccess, audit.ResultFailure, audit.ResultDenied),
		From: q.time("from"), To: q.time("to"),
	}
}

// vcenterScope limits f's vCenter records (site data) to the caller's
// sites when its data scope is limited; a context without a scope sees
// none of them (fail closed).
func vcenterScope(r *http.Request, f *audit.Filter) {
	sc, ok := access.From(r.Context())
	switch {
	case !ok:
		f.VCenterSites = []string{}
	case !sc.Unrestricted():
		f.VCenterSites = append([]string{}, sc.Sites...)
	}
}

func (h *auditResource) list(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := auditFilter(q)
	vcenterScope(r, &f)
	f.Before, f.Limit = q.cursor("cursor"), q.intRange("limit", 100, 1, 500)
	if err := q.err(); err != nil {
		return err
	}
	recs, next, err := h.a.logs.Query(r.Context(), f)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, cursorOf[audit.Record]{Items: recs, NextCursor: cursorString(next)})
	return nil
}

func (h *auditResource) get(w http.ResponseWriter, r *http.Request) error {
	seq, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || seq <= 0 {
		return newError(http.StatusNotFound, CodeAuditNotFound)
	}
	rec, err := h.a.logs.Get(r.Context(), seq)
	if err != nil {
		return err
	}
	if site, ok := rec.VCenterSite(); ok {
		// A vCenter event of a site outside the caller's scope is
		// answered exactly as a missing record.
		var f audit.Filter
		vcenterScope(r, &f)
		if f.VCenterSites != nil && !slices.Contains(f.VCenterSites, site) {
			return newError(http.StatusNotFound, CodeAuditNotFound)
		}
	}
	writeData(w, r, http.StatusOK, rec)
	return nil
}

func (h *auditResource) verify(w http.ResponseWriter, r *http.Request) error {
	res, err := h.a.logs.Verify(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, res)
	return nil
}

func (h *auditResource) export(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := auditFilter(q)
	vcenterScope(r, &f)
	if err := q.err(); err != nil {
		return err
	}
	header := []string{"id", "time", "source", "actor_type", "actor_id", "actor_name", "action", "resource_type", "resource_id",
		"result", "status", "ip", "user_agent", "request_id", "latency_us", "summary", "hash"}
	return h.streamCSV(w, r, "audit-log", header, func(ctx context.Context, emit func([]string) error) error {
		return h.a.logs.Each(ctx, f, func(rec *audit.Record) error {
			return emit([]string{strconv.FormatInt(rec.Seq, 10), rec.Time.Format(time.RFC3339Nano), rec.Source, rec.ActorType, rec.ActorID,
				rec.ActorName, rec.Action, rec.ResourceType, rec.ResourceID, rec.Result, strconv.Itoa(rec.Status), rec.IP, rec.UserAgent,
				rec.RequestID, strconv.FormatInt(rec.LatencyUS, 10), string(rec.Summary), hex.EncodeToString(rec.Hash)})
		})
	})
}

func loginFilter(q *query) audit.LoginFilter {
	return audit.LoginFilter{Username: q.str("user", 256), Result: q.oneOf("result", "success", "failure"), IP: q.str("ip", 64),
		From: q.time("from"), To: q.time("to")}
}

func (h *auditResource) listLogins(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := loginFilter(q)
	f.Before, f.Limit = q.cursor("cursor"), q.intRange("limit", 100, 1, 500)
	if err := q.err(); err != nil {
		return err
	}
	recs, next, err := h.a.logs.QueryLogins(r.Context(), f)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, cursorOf[audit.LoginRecord]{Items: recs, NextCursor: cursorString(next)})
	return nil
}

func (h *auditResource) exportLogins(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := loginFilter(q)
	if err := q.err(); err != nil {
		return err
	}
	header := []string{"id", "time", "user_id", "username", "result", "reason", "ip", "user_agent", "request_id"}
	return h.streamCSV(w, r, "login-log", header, func(ctx context.Context, emit func([]string) error) error {
		return h.a.logs.EachLogin(ctx, f, func(rec *audit.LoginRecord) error {
			return emit([]string{strconv.FormatInt(rec.ID, 10), rec.Time.Format(time.RFC3339Nano), rec.UserID, rec.Username, rec.Result,
				rec.Reason, rec.IP, rec.UserAgent, rec.RequestID})
		})
	})
}

// streamCSV writes a CSV download row by row. Once the first row is out, a
// failure can no longer become an error envelope: it is logged and the
// response is cut short (the client sees a truncated download).
func (h *auditResource) streamCSV(w http.ResponseWriter, r *http.Request, name string, header []string,
	each func(ctx context.Context, emit func([]string) error) error) error {
	started := false
	cw := csv.NewWriter(w)
	rows := 0
	start := func() error {
		started = true
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+"-"+time.Now().UTC().Format("20060102T150405Z")+`.csv"`)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return cw.Write(header)
	}
	emit := func(rec []string) error {
		if !started {
			if err := start(); err != nil {
				return err
			}
		}
		for i, v := range rec {
			rec[i] = csvSafe(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
		rows++
		if rows%200 == 0 {
			cw.Flush()
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		return cw.Error()
	}
	err := each(r.Context(), emit)
	if err != nil && !started {
		return err
	}
	if err != nil {
		h.a.log.Error("csv export cut short", "request_id", stateOf(r).requestID, "rows", rows, "err", err)
		return nil
	}
	if !started {
		if err := start(); err != nil {
			return nil
		}
	}
	cw.Flush()
	return nil
}

// csvSafe defuses spreadsheet formula injection: a cell starting with a
// formula character is prefixed with a quote.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
