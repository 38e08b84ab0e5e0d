package httpapi

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// usersResource is /users: accounts, their roles, scope and lock state.
type usersResource struct{ a *API }

// Routes lists the /users routes.
func (h *usersResource) Routes() []Route {
	const tag = "users"
	user := ref("User")
	return []Route{
		{Method: "GET", Pattern: "/users", Access: auth.PermUserRead, Handle: h.list, Doc: Doc{Tag: tag, Summary: "List users",
			Params: append([]Param{
				{Name: "q", Description: "substring of username, email or display name"},
				{Name: "role", Description: "only users holding this role"},
				{Name: "locked", Description: "true or false"},
				{Name: "sort", Description: "comma-separated fields, - for descending: username, email, created_at, last_login_at"},
			}, pageParams...), Response: pageSchema(user), Errors: []int{401, 403, 422}}},
		{Method: "POST", Pattern: "/users", Access: auth.PermUserWrite, Action: "user.create", Resource: "user", Handle: h.create, Doc: Doc{Tag: tag,
			Summary: "Create a user (with roles the caller could grant; in the caller's data scope)", Body: ref("UserCreate"), Response: user, Status: http.StatusCreated,
			Errors: []int{401, 403, 409, 422}, Codes: []string{CodeEscalation}}},
		{Method: "GET", Pattern: "/users/{id}", Access: auth.PermUserRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "Get a user", Response: user, Errors: []int{401, 403, 404}}},
		{Method: "PUT", Pattern: "/users/{id}", Access: auth.PermUserWrite, Action: "user.update", Resource: "user", Handle: h.update, Doc: Doc{Tag: tag,
			Summary: "Replace a user's username, email and display name", Body: ref("UserUpdate"), Response: user, Errors: []int{401, 403, 404, 409, 422},
			Codes: []string{CodeEscalation}}},
		{Method: "DELETE", Pattern: "/users/{id}", Access: auth.PermUserWrite, Action: "user.delete", Resource: "user", Handle: h.delete, Doc: Doc{Tag: tag,
			Summary: "Delete a user (not yourself, not the last administrator)", Response: objectSchema(nil), Errors: []int{401, 403, 404, 409},
			Codes: []string{CodeEscalation, CodeSelfOperation, CodeLastAdmin}}},
		{Method: "POST", Pattern: "/users/{id}/reset-password", Access: auth.PermUserWrite, Action: "user.reset_password", Resource: "user", Handle: h.resetPassword, Doc: Doc{Tag: tag,
			Summary: "Set a new password (generated and returned once if none is given); ends the user's sessions",
			Body:    ref("PasswordReset"), Response: ref("PasswordResetResult"), Errors: []int{401, 403, 404, 409, 422},
			Codes: []string{CodeEscalation, CodeSelfOperation}}},
		{Method: "POST", Pattern: "/users/{id}/lock", Access: auth.PermUserWrite, Action: "user.lock", Resource: "user", Handle: h.lock, Doc: Doc{Tag: tag,
			Summary: "Lock a user; their sessions and API tokens stop working at once", Response: user, Errors: []int{401, 403, 404, 409},
			Codes: []string{CodeEscalation, CodeSelfOperation, CodeLastAdmin}}},
		{Method: "POST", Pattern: "/users/{id}/unlock", Access: auth.PermUserWrite, Action: "user.unlock", Resource: "user", Handle: h.unlock, Doc: Doc{Tag: tag,
			Summary: "Unlock a user (administrator lock and failed-login lockout)", Response: user, Errors: []int{401, 403, 404},
			Codes: []string{CodeEscalation}}},
		{Method: "PUT", Pattern: "/users/{id}/roles", Access: auth.PermUserWrite, Action: "user.set_roles", Resource: "user", Handle: h.setRoles, Doc: Doc{Tag: tag,
			Summary: "Replace a user's roles (not your own; only roles whose permissions you hold)", Body: ref("UserRoles"), Response: user,
			Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeEscalation, CodeSelfModification, CodeLastAdmin}}},
		{Method: "PUT", Pattern: "/users/{id}/scope", Access: auth.PermUserWrite, Action: "user.set_scope", Resource: "user", Handle: h.setScope, Doc: Doc{Tag: tag,
			Summary: "Replace a user's data scope (sites and VM groups; empty means everything; not your own, and within yours)", Body: ref("Scope"),
			Response: user, Errors: []int{401, 403, 404, 422}, Codes: []string{CodeEscalation, CodeSelfModification}}},
		{Method: "GET", Pattern: "/users/{id}/permissions", Access: auth.PermUserRead, Handle: h.permissions, Doc: Doc{Tag: tag,
			Summary: "A user's effective permissions, after role inheritance", Response: ref("PermissionList"), Errors: []int{401, 403, 404}}},
	}
}

func (h *usersResource) list(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	in := auth.ListUsersQuery{Q: q.str("q", 200), Role: q.str("role", 63), Locked: q.boolean("locked"), Sort: q.sort(auth.UserSortFields)}
	in.Page, in.PageSize = q.page()
	if err := q.err(); err != nil {
		return err
	}
	users, total, err := h.a.auth.ListUsers(r.Context(), in)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, pageOf[auth.User]{Items: users, Total: total, Page: in.Page, PageSize: in.PageSize})
	return nil
}

type userFields struct {
	Username    *string `json:"username"`
	Email       *string `json:"email"`
	DisplayName *string `json:"display_name"`
}

func (b *userFields) validate(v *fieldErrors) {
	if v.required("username", b.Username != nil && *b.Username != "") {
		v.pattern("username", *b.Username, usernameRE, "2-64 letters, digits, . _ @ -")
	}
	if b.Email != nil && *b.Email != "" {
		v.maxLen("email", *b.Email, 254)
		v.pattern("email", *b.Email, emailRE, "name@example.com")
	}
	if b.DisplayName != nil {
		v.maxLen("display_name", *b.DisplayName, 128)
	}
}

func (b *userFields) input() auth.UserInput {
	return auth.UserInput{Username: *b.Username, Email: deref(b.Email), DisplayName: deref(b.DisplayName)}
}

// userCreate repeats userFields' fields rather than embedding it, so that
// JSON type errors name the field as the client spelled it.
type userCreate struct {
	Username    *string  `json:"username"`
	Email       *string  `json:"email"`
	DisplayName *string  `json:"display_name"`
	Password    *string  `json:"password"`
	Roles       []string `json:"roles"`
}

func (b *userCreate) fields() *userFields {
	return &userFields{Username: b.Username, Email: b.Email, DisplayName: b.DisplayName}
}

func (b *userCreate) validate(v *fieldErrors) {
	b.fields().validate(v)
	v.required("password", b.Password != nil && *b.Password != "")
	validateNames(v, "roles", b.Roles, roleNameRE)
}

func validateNames(v *fieldErrors, field string, names []string, re interface{ MatchString(string) bool }) {
	if len(names) > 100 {
		v.add(field, FieldOutOfRange, map[string]any{"min": 0, "max": 100})
		return
	}
	for i, n := range names {
		if !re.MatchString(n) {
			v.add(fmt.Sprintf("%s[%d]", field, i), FieldInvalidFormat, map[string]any{"format": "a name"})
		}
	}
}

func (h *usersResource) create(w http.ResponseWriter, r *http.Request) error {
	var body userCreate
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	u, err := h.a.auth.CreateUser(r.Context(), actor(r), body.fields().input(), *body.Password, body.Roles)
	if err != nil {
		return err
	}
	setAuditResource(r, u.ID.String())
	writeData(w, r, http.StatusCreated, u)
	return nil
}

func (h *usersResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	u, err := h.a.auth.GetUser(r.Context(), id)
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, u)
	return nil
}

func (h *usersResource) update(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	var body userFields
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	u, err := h.a.auth.UpdateUser(r.Context(), actor(r), id, body.input())
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, u)
	return nil
}

func (h *usersResource) delete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	if err := h.a.auth.DeleteUser(r.Context(), actor(r), id); err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

type passwordReset struct {
	Password *string `json:"password"`
}

func (h *usersResource) resetPassword(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	var body passwordReset
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &body); err != nil {
			return err
		}
	}
	pw, err := h.a.auth.ResetPassword(r.Context(), actor(r), id, deref(body.Password))
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	out := map[string]any{"generated": body.Password == nil || *body.Password == ""}
	if out["generated"] == true {
		out["password"] = pw
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

func (h *usersResource) lock(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	if err := h.a.auth.LockUser(r.Context(), actor(r), id); err != nil {
		return notFound(err, CodeUserNotFound)
	}
	return h.respondUser(w, r, id)
}

func (h *usersResource) unlock(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	if err := h.a.auth.UnlockUser(r.Context(), actor(r), id); err != nil {
		return notFound(err, CodeUserNotFound)
	}
	return h.respondUser(w, r, id)
}

func (h *usersResource) respondUser(w http.ResponseWriter, r *http.Request, id uuid.UUID) error {
	u, err := h.a.auth.GetUser(r.Context(), id)
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, u)
	return nil
}

type userRoles struct {
	Roles *[]string `json:"roles"`
}

func (b *userRoles) validate(v *fieldErrors) {
	if v.required("roles", b.Roles != nil) {
		validateNames(v, "roles", *b.Roles, roleNameRE)
	}
}

func (h *usersResource) setRoles(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	var body userRoles
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	u, err := h.a.auth.SetUserRoles(r.Context(), actor(r), id, *body.Roles)
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, u)
	return nil
}

type scopeBody struct {
	Sites    *[]string `json:"sites"`
	VMGroups *[]string `json:"vm_groups"`
}

func (b *scopeBody) validate(v *fieldErrors) {
	for _, f := range []struct {
		field string
		list  *[]string
	}{{"sites", b.Sites}, {"vm_groups", b.VMGroups}} {
		field, list := f.field, f.list
		if v.required(field, list != nil) {
			if len(*list) > 1000 {
				v.add(field, FieldOutOfRange, map[string]any{"min": 0, "max": 1000})
			}
			for i, s := range *list {
				if s == "" || len(s) > 128 {
					v.add(fmt.Sprintf("%s[%d]", field, i), FieldInvalidFormat, map[string]any{"format": "1-128 characters"})
				}
			}
		}
	}
}

func (h *usersResource) setScope(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	var body scopeBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	// A scope names VM groups by id; each must exist, and none may select
	// by labels (vm:write edits labels, and must not widen a scope).
	if missing, labelRuled, err := h.a.inventory.ScopeGroups(r.Context(), *body.VMGroups); err != nil {
		return err
	} else if len(missing)+len(labelRuled) > 0 {
		var fields []FieldError
		for i, g := range *body.VMGroups {
			switch {
			case slices.Contains(missing, g):
				fields = append(fields, FieldError{Field: fmt.Sprintf("vm_groups[%d]", i), Code: FieldUnknownGroup, Params: map[string]any{"name": g}})
			case slices.Contains(labelRuled, g):
				fields = append(fields, FieldError{Field: fmt.Sprintf("vm_groups[%d]", i), Code: FieldLabelRuleScope, Params: map[string]any{"name": g}})
			}
		}
		return validationError(fields...)
	}
	u, err := h.a.auth.SetUserScope(r.Context(), actor(r), id, auth.Scope{Sites: *body.Sites, VMGroups: *body.VMGroups})
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, u)
	return nil
}

func (h *usersResource) permissions(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeUserNotFound)
	if err != nil {
		return err
	}
	perms, err := h.a.auth.UserPermissions(r.Context(), id)
	if err != nil {
		return notFound(err, CodeUserNotFound)
	}
	writeData(w, r, http.StatusOK, map[string]any{"permissions": nonNil(perms)})
	return nil
}

// actor is the caller of r, on whose behalf auth judges every change to
// users, roles and API tokens (no escalation). The routes that use it need
// a permission or a session, so a principal is always there; were it
// missing, auth would refuse the change.
func actor(r *http.Request) *auth.Principal {
	p, _ := auth.PrincipalFrom(r.Context())
	return p
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
