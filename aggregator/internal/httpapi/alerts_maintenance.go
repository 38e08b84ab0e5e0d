package httpapi

import (
	"net/http"
	"slices"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// Maintenance windows: the alerts whose labels match a window's matchers
// and that fire inside it (by their event time) are recorded as
// suppressed and never paged. Like silences they are configuration that
// decides what pages, so a caller whose data scope is limited may only
// write windows that match site = one of its sites.

// CodeWindowNotFound: no maintenance window has that id.
const CodeWindowNotFound = "MAINTENANCE_WINDOW_NOT_FOUND"

type alertWindowsResource struct{ a *API }

// Routes lists the maintenance window routes.
func (h *alertWindowsResource) Routes() []Route {
	const tag = "alerts"
	win := ref("MaintenanceWindow")
	codes := []string{CodeWindowNotFound}
	return []Route{
		{Method: "GET", Pattern: "/maintenance-windows", Access: auth.PermAlertRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "List maintenance windows (active tells whether one covers now)", Response: listSchema(win), Errors: []int{401, 403}}},
		{Method: "POST", Pattern: "/maintenance-windows", Access: auth.PermAlertWrite, Action: "maintenance_window.create", Resource: "maintenance_window",
			Handle: h.create, Doc: Doc{Tag: tag,
				Summary: "Create a maintenance window: the alerts whose labels match every matcher and that fire inside it (one stretch from starts_at " +
					"lasting duration, or one every `every` until ends_at) are suppressed, never paged. A caller whose data scope is limited must " +
					"match site = one of its sites",
				Body: ref("MaintenanceWindowInput"), Response: win, Status: http.StatusCreated, Errors: []int{401, 403, 422}, Codes: []string{CodeEscalation}}},
		{Method: "GET", Pattern: "/maintenance-windows/{id}", Access: auth.PermAlertRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "Get a maintenance window", Response: win, Errors: []int{401, 403, 404}, Codes: codes}},
		{Method: "PUT", Pattern: "/maintenance-windows/{id}", Access: auth.PermAlertWrite, Action: "maintenance_window.update", Resource: "maintenance_window",
			Handle: h.update, Doc: Doc{Tag: tag, Summary: "Replace a maintenance window (alerts it already suppressed stay as recorded)",
				Body: ref("MaintenanceWindowInput"), Response: win, Errors: []int{401, 403, 404, 422}, Codes: []string{CodeWindowNotFound, CodeEscalation}}},
		{Method: "DELETE", Pattern: "/maintenance-windows/{id}", Access: auth.PermAlertWrite, Action: "maintenance_window.delete", Resource: "maintenance_window",
			Handle: h.delete, Doc: Doc{Tag: tag, Summary: "Delete a maintenance window (alerts it already suppressed stay as recorded)",
				Response: objectSchema(nil), Errors: []int{401, 403, 404}, Codes: []string{CodeWindowNotFound, CodeEscalation}}},
	}
}

// windowInput is the body of POST and PUT /maintenance-windows.
type windowInput struct {
	Name     *string         `json:"name"`
	Matchers []alert.Matcher `json:"matchers"`
	StartsAt *time.Time      `json:"starts_at"`
	Duration alert.Duration  `json:"duration"`
	Every    alert.Duration  `json:"every"`
	EndsAt   *time.Time      `json:"ends_at"`
	Comment  *string         `json:"comment"`
}

func (b *windowInput) window() alert.MaintenanceWindow {
	w := alert.MaintenanceWindow{Name: deref(b.Name), Matchers: b.Matchers, Duration: b.Duration, Every: b.Every, Comment: deref(b.Comment)}
	if b.StartsAt != nil {
		w.StartsAt = b.StartsAt.UTC()
	}
	if b.EndsAt != nil {
		t := b.EndsAt.UTC()
		w.EndsAt = &t
	}
	return w
}

func (h *alertWindowsResource) list(w http.ResponseWriter, r *http.Request) error {
	items, err := h.a.alerts.ListWindows(r.Context(), h.a.now())
	if err != nil {
		return err
	}
	// A caller whose scope is limited sees the windows of its sites only.
	items = slices.DeleteFunc(items, func(w alert.MaintenanceWindow) bool { return !withinSites(r, w.SitesOf()) })
	writeData(w, r, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (h *alertWindowsResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeWindowNotFound)
	if err != nil {
		return err
	}
	out, err := h.a.alerts.Window(r.Context(), id, h.a.now())
	if err != nil {
		return alertError(err, CodeWindowNotFound)
	}
	if !withinSites(r, out.SitesOf()) {
		return newError(http.StatusNotFound, CodeWindowNotFound) // another site's: as a missing one
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

// decode reads and validates a window body, and checks it stays within
// the caller's sites.
func (h *alertWindowsResource) decode(r *http.Request) (alert.MaintenanceWindow, error) {
	var body windowInput
	if err := decodeJSON(r, &body); err != nil {
		return alert.MaintenanceWindow{}, err
	}
	win := body.window()
	if err := win.Validate(); err != nil {
		return win, alertError(err, CodeWindowNotFound)
	}
	if !withinSites(r, win.SitesOf()) {
		return win, scopeDenied("window_outside_scope")
	}
	return win, nil
}

func (h *alertWindowsResource) create(w http.ResponseWriter, r *http.Request) error {
	win, err := h.decode(r)
	if err != nil {
		return err
	}
	out, err := h.a.alerts.CreateWindow(r.Context(), win, actorLabel(r), h.a.now())
	if err != nil {
		return alertError(err, CodeWindowNotFound)
	}
	setAuditResource(r, out.ID.String())
	writeData(w, r, http.StatusCreated, out)
	return nil
}

// existing reads the window of the path and checks the caller may change
// it.
func (h *alertWindowsResource) existing(r *http.Request) (alert.MaintenanceWindow, error) {
	id, err := pathID(r, CodeWindowNotFound)
	if err != nil {
		return alert.MaintenanceWindow{}, err
	}
	cur, err := h.a.alerts.Window(r.Context(), id, h.a.now())
	if err != nil {
		return cur, alertError(err, CodeWindowNotFound)
	}
	if !withinSites(r, cur.SitesOf()) {
		return cur, newError(http.StatusNotFound, CodeWindowNotFound) // another site's: as a missing one
	}
	return cur, nil
}

func (h *alertWindowsResource) update(w http.ResponseWriter, r *http.Request) error {
	cur, err := h.existing(r)
	if err != nil {
		return err
	}
	win, err := h.decode(r)
	if err != nil {
		return err
	}
	out, err := h.a.alerts.UpdateWindow(r.Context(), cur.ID, win, h.a.now())
	if err != nil {
		return alertError(err, CodeWindowNotFound)
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

func (h *alertWindowsResource) delete(w http.ResponseWriter, r *http.Request) error {
	cur, err := h.existing(r)
	if err != nil {
		return err
	}
	if err := h.a.alerts.DeleteWindow(r.Context(), cur.ID); err != nil {
		return alertError(err, CodeWindowNotFound)
	}
	writeData(w, r, http.StatusOK, map[string]any{})
	return nil
}
