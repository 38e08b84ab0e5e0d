package httpapi

import (
	"net/http"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// rolesResource is /roles and /permissions.
type rolesResource struct{ a *API }

// Routes lists the /roles and /permissions routes.
func (h *rolesResource) Routes() []Route {
	const tag = "roles"
	role := ref("Role")
	return []Route{
		{Method: "GET", Pattern: "/roles", Access: auth.PermRoleRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "List roles", Response: listSchema(role), Errors: []int{401, 403}}},
		{Method: "POST", Pattern: "/roles", Access: auth.PermRoleWrite, Action: "role.create", Resource: "role", Handle: h.create, Doc: Doc{Tag: tag,
			Summary: "Create a custom role (its effective permissions must be ones you hold)", Body: ref("RoleCreate"), Response: role, Status: http.StatusCreated,
			Errors: []int{401, 403, 409, 422}, Codes: []string{CodeEscalation}}},
		{Method: "GET", Pattern: "/roles/{id}", Access: auth.PermRoleRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "Get a role with its own and effective permissions", Response: role, Errors: []int{401, 403, 404}}},
		{Method: "PUT", Pattern: "/roles/{id}", Access: auth.PermRoleWrite, Action: "role.update", Resource: "role", Handle: h.update, Doc: Doc{Tag: tag,
			Summary: "Replace a custom role's name, description and parents (its effective permissions, before and after, must be ones you hold)",
			Body:    ref("RoleUpdate"), Response: role, Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeEscalation, CodeRoleBuiltin, CodeRoleCycle, CodeLastAdmin}}},
		{Method: "DELETE", Pattern: "/roles/{id}", Access: auth.PermRoleWrite, Action: "role.delete", Resource: "role", Handle: h.delete, Doc: Doc{Tag: tag,
			Summary: "Delete a custom role (one whose effective permissions you hold)", Response: objectSchema(nil), Errors: []int{401, 403, 404, 409},
			Codes: []string{CodeEscalation, CodeRoleBuiltin, CodeLastAdmin}}},
		{Method: "PUT", Pattern: "/roles/{id}/permissions", Access: auth.PermRoleWrite, Action: "role.set_permissions", Resource: "role", Handle: h.setPermissions, Doc: Doc{Tag: tag,
			Summary: "Replace a custom role's own permissions (its effective permissions, before and after, must be ones you hold)", Body: ref("RolePermissions"),
			Response: role, Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeEscalation, CodeRoleBuiltin, CodeLastAdmin}}},
		{Method: "GET", Pattern: "/permissions", Access: auth.PermRoleRead, Handle: h.catalog, Doc: Doc{Tag: tag,
			Summary: "The tree of all permissions", Response: listSchema(ref("PermissionGroup")), Errors: []int{401, 403}}},
	}
}

func (h *rolesResource) list(w http.ResponseWriter, r *http.Request) error {
	roles, err := h.a.auth.ListRoles(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": roles})
	return nil
}

type roleFields struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Parents     *[]string `json:"parents"`
}

func (b *roleFields) validate(v *fieldErrors) {
	if v.required("name", b.Name != nil && *b.Name != "") {
		v.pattern("name", *b.Name, roleNameRE, "1-63 lower-case letters, digits, . _ -")
	}
	if b.Description != nil {
		v.maxLen("description", *b.Description, 512)
	}
	if b.Parents != nil {
		validateNames(v, "parents", *b.Parents, roleNameRE)
	}
}

func (b *roleFields) input() auth.RoleInput {
	in := auth.RoleInput{Name: *b.Name, Description: deref(b.Description)}
	if b.Parents != nil {
		in.Parents = *b.Parents
	}
	return in
}

// roleCreate repeats roleFields' fields rather than embedding it, so that
// JSON type errors name the field as the client spelled it.
type roleCreate struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Parents     *[]string `json:"parents"`
	Permissions []string  `json:"permissions"`
}

func (b *roleCreate) fields() *roleFields {
	return &roleFields{Name: b.Name, Description: b.Description, Parents: b.Parents}
}

func (b *roleCreate) validate(v *fieldErrors) {
	b.fields().validate(v)
	validatePermissions(v, b.Permissions)
}

func validatePermissions(v *fieldErrors, perms []string) {
	for i, p := range perms {
		if !auth.KnownPermission(p) {
			v.add("permissions["+itoa(i)+"]", FieldUnknownPermission, map[string]any{"name": p})
		}
	}
}

func (h *rolesResource) create(w http.ResponseWriter, r *http.Request) error {
	var body roleCreate
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	role, err := h.a.auth.CreateRole(r.Context(), actor(r), body.fields().input(), body.Permissions)
	if err != nil {
		return err
	}
	setAuditResource(r, role.ID.String())
	writeData(w, r, http.StatusCreated, role)
	return nil
}

func (h *rolesResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeRoleNotFound)
	if err != nil {
		return err
	}
	role, err := h.a.auth.GetRole(r.Context(), id)
	if err != nil {
		return notFound(err, CodeRoleNotFound)
	}
	writeData(w, r, http.StatusOK, role)
	return nil
}

func (h *rolesResource) update(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeRoleNotFound)
	if err != nil {
		return err
	}
	var body roleFields
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	role, err := h.a.auth.UpdateRole(r.Context(), actor(r), id, body.input())
	if err != nil {
		return notFound(err, CodeRoleNotFound)
	}
	writeData(w, r, http.StatusOK, role)
	return nil
}

func (h *rolesResource) delete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeRoleNotFound)
	if err != nil {
		return err
	}
	if err := h.a.auth.DeleteRole(r.Context(), actor(r), id); err != nil {
		return notFound(err, CodeRoleNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

type rolePermissions struct {
	Permissions *[]string `json:"permissions"`
}

func (b *rolePermissions) validate(v *fieldErrors) {
	if v.required("permissions", b.Permissions != nil) {
		validatePermissions(v, *b.Permissions)
	}
}

func (h *rolesResource) setPermissions(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeRoleNotFound)
	if err != nil {
		return err
	}
	var body rolePermissions
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	role, err := h.a.auth.SetRolePermissions(r.Context(), actor(r), id, *body.Permissions)
	if err != nil {
		return notFound(err, CodeRoleNotFound)
	}
	writeData(w, r, http.StatusOK, role)
	return nil
}

func (h *rolesResource) catalog(w http.ResponseWriter, r *http.Request) error {
	writeData(w, r, http.StatusOK, map[string]any{"items": auth.Catalog})
	return nil
}
