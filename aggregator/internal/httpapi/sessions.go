package httpapi

import (
	"net/http"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// sessionsResource is /sessions: online users and forced logout.
type sessionsResource struct{ a *API }

// Routes lists the /sessions routes.
func (h *sessionsResource) Routes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/sessions", Access: auth.PermSessionAdmin, Handle: h.list, Doc: Doc{Tag: "sessions",
			Summary: "Open sessions: who is online, since when, from where, last activity",
			Params:  append([]Param{{Name: "user", Description: "username"}}, pageParams...), Response: pageSchema(ref("Session")), Errors: []int{401, 403, 422}}},
		{Method: "DELETE", Pattern: "/sessions/{id}", Access: auth.PermSessionAdmin, Action: "session.revoke", Resource: "session", Handle: h.revoke, Doc: Doc{Tag: "sessions",
			Summary:  "Force a session to log out, at once; not the session of a user who holds more than the caller (AUTH_ESCALATION_DENIED)",
			Response: objectSchema(nil), Errors: []int{401, 403, 404}, Codes: []string{CodeEscalation}}},
	}
}

func (h *sessionsResource) list(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	in := auth.ListSessionsQuery{User: q.str("user", 256)}
	in.Page, in.PageSize = q.page()
	if err := q.err(); err != nil {
		return err
	}
	list, total, err := h.a.auth.ListSessions(r.Context(), in)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, pageOf[auth.Session]{Items: list, Total: total, Page: in.Page, PageSize: in.PageSize})
	return nil
}

func (h *sessionsResource) revoke(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeSessionNotFound)
	if err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	if err := h.a.auth.ForceLogout(r.Context(), p, id); err != nil {
		return notFound(err, CodeSessionNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}
