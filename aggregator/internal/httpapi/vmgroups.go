package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// The user side of VMs (PATCH and DELETE /vms/{id}, POST /vms/batch) and
// VM groups (/vm-groups). vSphere-owned fields are read-only; an operator
// keeps a description, an owner and labels on a VM.
//
// Groups can limit data scopes, so changing one is guarded like a grant:
// a group that some user's scope names can be changed (rule, members) only
// by a caller who may set scopes (user:write and an unrestricted scope), in
// the same transaction as the check, and deleted by nobody until it leaves
// every scope (an emptied scope would mean everything); such a group cannot
// select by labels (vm:write edits labels). A caller whose own scope is
// limited sees only the groups of its scope and those wholly within its
// sites, and a rule it writes must name one of its sites.

// Limits of the user fields.
const (
	maxLabels       = 50
	maxBatch        = 500
	maxDescription  = 2000
	maxGroupMembers = 500
)

var labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$`)

type vmGroupsResource struct{ a *API }

// Routes lists the VM user-field and VM group routes.
func (h *vmGroupsResource) Routes() []Route {
	const tag = "vm-groups"
	group := ref("VMGroup")
	return []Route{
		{Method: "PATCH", Pattern: "/vms/{id}", Access: auth.PermVMWrite, Action: "vm.update", Resource: "vm", Handle: h.patchVM, Doc: Doc{Tag: "vms",
			Summary: "Set a VM's user fields (description, owner, labels — labels replace the set); vSphere's fields are read-only",
			Body:    ref("VMPatch"), Response: ref("VMDetail"), Errors: []int{401, 403, 404, 422}}},
		{Method: "DELETE", Pattern: "/vms/{id}", Access: auth.PermVMWrite, Action: "vm.forget", Resource: "vm", Handle: h.forgetVM, Doc: Doc{Tag: "vms",
			Summary: "Forget a VM vCenter no longer has (its user fields and static group memberships; samples stay until retention). " +
				"A VM still in vCenter's inventory is 409 VM_LIVE",
			Response: objectSchema(nil), Errors: []int{401, 403, 404, 409}, Codes: []string{CodeVMLive}}},
		{Method: "POST", Pattern: "/vms/batch", Access: auth.PermVMWrite, Action: "vm.batch", Resource: "vm", Handle: h.batch, Doc: Doc{Tag: "vms",
			Summary: "Apply one action to many VMs (add_to_group, remove_from_group, set_labels, forget); the answer says per VM what happened",
			Body:    ref("VMBatch"), Response: ref("VMBatchResult"), Errors: []int{401, 403, 404, 422}, Codes: []string{CodeEscalation}}},
		{Method: "GET", Pattern: "/vm-groups", Access: auth.PermVMRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "List VM groups with their members in the caller's data scope counted", Response: listSchema(group), Errors: []int{401, 403}}},
		{Method: "POST", Pattern: "/vm-groups", Access: auth.PermVMWrite, Action: "vm_group.create", Resource: "vm_group", Handle: h.create, Doc: Doc{Tag: tag,
			Summary: "Create a VM group: static members (POST /vm-groups/{id}/members) and/or a rule (site, name glob, folder, tags, cluster, host, labels)",
			Body:    ref("VMGroupInput"), Response: group, Status: http.StatusCreated, Errors: []int{401, 403, 409, 422}, Codes: []string{CodeEscalation, CodeGroupNameTaken}}},
		{Method: "GET", Pattern: "/vm-groups/{id}", Access: auth.PermVMRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "Get a VM group (list its members with GET /vms?group={id})", Response: group, Errors: []int{401, 403, 404}}},
		{Method: "PUT", Pattern: "/vm-groups/{id}", Access: auth.PermVMWrite, Action: "vm_group.update", Resource: "vm_group", Handle: h.update, Doc: Doc{Tag: tag,
			Summary: "Replace a VM group's name, description and rule", Body: ref("VMGroupInput"), Response: group,
			Errors: []int{401, 403, 404, 409, 422}, Codes: []string{CodeEscalation, CodeGroupNameTaken}}},
		{Method: "DELETE", Pattern: "/vm-groups/{id}", Access: auth.PermVMWrite, Action: "vm_group.delete", Resource: "vm_group", Handle: h.delete, Doc: Doc{Tag: tag,
			Summary: "Delete a VM group; refused while some user's data scope names it (VM_GROUP_IN_SCOPE)", Response: objectSchema(nil),
			Errors: []int{401, 403, 404, 409}, Codes: []string{CodeGroupInScope}}},
		{Method: "POST", Pattern: "/vm-groups/{id}/members", Access: auth.PermVMWrite, Action: "vm_group.add_members", Resource: "vm_group", Handle: h.members(true),
			Doc: Doc{Tag: tag, Summary: "Add static members (VMs in the caller's data scope); per-VM results", Body: ref("VMList"), Response: ref("VMBatchResult"),
				Errors: []int{401, 403, 404, 422}, Codes: []string{CodeEscalation}}},
		{Method: "DELETE", Pattern: "/vm-groups/{id}/members", Access: auth.PermVMWrite, Action: "vm_group.remove_members", Resource: "vm_group", Handle: h.members(false),
			Doc: Doc{Tag: tag, Summary: "Remove static members (a JSON body lists them); per-VM results", Body: ref("VMList"), Response: ref("VMBatchResult"),
				Errors: []int{401, 403, 404, 422}, Codes: []string{CodeEscalation}}},
	}
}

// groupID reads an optional VM group id parameter.
func (q *query) groupID(name string) string {
	s := q.str(name, 64)
	if s == "" {
		return ""
	}
	if _, err := uuid.Parse(s); err != nil {
		q.fe.add(name, FieldInvalidFormat, map[string]any{"format": "a VM group id (UUID)"})
		return ""
	}
	return s
}

func validateLabels(v *fieldErrors, field string, labels map[string]string) {
	if len(labels) > maxLabels {
		v.add(field, FieldOutOfRange, map[string]any{"min": 0, "max": maxLabels})
		return
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !labelKeyRE.MatchString(k) {
			v.add(field+"."+k, FieldInvalidFormat, map[string]any{"format": "1-63 letters, digits, . _ / -"})
		}
		if utf8.RuneCountInString(labels[k]) > 255 {
			v.add(field+"."+k, FieldTooLong, map[string]any{"max": 255})
		}
	}
}

// vmPatch is the body of PATCH /vms/{id}.
type vmPatch struct {
	Description *string            `json:"description"`
	Owner       *string            `json:"owner"`
	Labels      *map[string]string `json:"labels"`
}

func (b *vmPatch) validate(v *fieldErrors) {
	if b.Description == nil && b.Owner == nil && b.Labels == nil {
		v.add("description", FieldRequired, nil)
	}
	if b.Description != nil {
		v.maxLen("description", *b.Description, maxDescription)
	}
	if b.Owner != nil {
		v.maxLen("owner", *b.Owner, 255)
	}
	if b.Labels != nil {
		validateLabels(v, "labels", *b.Labels)
	}
}

func (h *vmGroupsResource) patchVM(w http.ResponseWriter, r *http.Request) error {
	source, moref, err := pathObjectID(r, CodeVMNotFound)
	if err != nil {
		return err
	}
	var body vmPatch
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	if err := h.a.inventory.PatchVM(r.Context(), source, moref, store.VMFieldsPatch{Description: body.Description, Owner: body.Owner, Labels: body.Labels},
		principalLabel(p)); err != nil {
		return notFound(err, CodeVMNotFound)
	}
	d, err := h.a.inventory.VM(r.Context(), source, moref)
	if err != nil {
		return notFound(err, CodeVMNotFound)
	}
	writeData(w, r, http.StatusOK, vmDetailOf(&d))
	return nil
}

func forgetError(err error) error {
	if errors.Is(err, store.ErrVMLive) {
		return newError(http.StatusConflict, CodeVMLive)
	}
	return notFound(err, CodeVMNotFound)
}

func (h *vmGroupsResource) forgetVM(w http.ResponseWriter, r *http.Request) error {
	source, moref, err := pathObjectID(r, CodeVMNotFound)
	if err != nil {
		return err
	}
	if err := h.a.inventory.ForgetVM(r.Context(), source, moref); err != nil {
		return forgetError(err)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

// Batch actions.
const (
	BatchAddToGroup      = "add_to_group"
	BatchRemoveFromGroup = "remove_from_group"
	BatchSetLabels       = "set_labels"
	BatchForget          = "forget"
)

// vmBatch is the body of POST /vms/batch.
type vmBatch struct {
	VMs    []string           `json:"vms"`
	Action *string            `json:"action"`
	Group  *string            `json:"group"`
	Labels *map[string]string `json:"labels"`

	group uuid.UUID
}

func validateVMIDs(v *fieldErrors, ids []string) {
	if v.required("vms", len(ids) > 0) && len(ids) > maxBatch {
		v.add("vms", FieldOutOfRange, map[string]any{"min": 1, "max": maxBatch})
		return
	}
	for i, id := range ids {
		if _, _, ok := parseObjectID(id); !ok {
			v.add(fmt.Sprintf("vms[%d]", i), FieldInvalidFormat, map[string]any{"format": "source:moref"})
		}
	}
}

func (b *vmBatch) validate(v *fieldErrors) {
	validateVMIDs(v, b.VMs)
	if !v.required("action", b.Action != nil) {
		return
	}
	switch *b.Action {
	case BatchAddToGroup, BatchRemoveFromGroup:
		if v.required("group", b.Group != nil) {
			id, err := uuid.Parse(*b.Group)
			if err != nil {
				v.add("group", FieldInvalidFormat, map[string]any{"format": "a VM group id (UUID)"})
			}
			b.group = id
		}
	case BatchSetLabels:
		if v.required("labels", b.Labels != nil) {
			validateLabels(v, "labels", *b.Labels)
		}
	case BatchForget:
	default:
		v.add("action", FieldInvalidValue, map[string]any{"allowed": "add_to_group, remove_from_group, set_labels, forget"})
	}
}

// BatchItem is one VM of a batch answer: done, or the code of why not.
type BatchItem struct {
	ID   string `json:"id"`
	OK   bool   `json:"ok"`
	Code string `json:"code,omitempty"`
}

func (h *vmGroupsResource) batch(w http.ResponseWriter, r *http.Request) error {
	var body vmBatch
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	ctx := r.Context()
	items := make([]BatchItem, len(body.VMs))
	refs := make([]store.VMRef, len(body.VMs))
	for i, id := range body.VMs {
		items[i].ID = id
		refs[i].Source, refs[i].Moref, _ = parseObjectID(id)
	}
	switch *body.Action {
	case BatchAddToGroup, BatchRemoveFromGroup:
		res, err := h.a.inventory.SetGroupMembers(ctx, body.group, refs, *body.Action == BatchAddToGroup, groupChange(r))
		if err != nil {
			return groupWriteError(err)
		}
		for i, e := range res {
			items[i].OK, items[i].Code = e == nil, itemCode(e)
		}
	case BatchSetLabels:
		p, _ := auth.PrincipalFrom(ctx)
		for i, ref := range refs {
			err := h.a.inventory.PatchVM(ctx, ref.Source, ref.Moref, store.VMFieldsPatch{Labels: body.Labels}, principalLabel(p))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			items[i].OK, items[i].Code = err == nil, itemCode(err)
		}
	case BatchForget:
		for i, ref := range refs {
			err := h.a.inventory.ForgetVM(ctx, ref.Source, ref.Moref)
			if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrVMLive) {
				return err
			}
			items[i].OK, items[i].Code = err == nil, itemCode(err)
		}
	}
	done := 0
	for _, it := range items {
		if it.OK {
			done++
		}
	}
	addAuditSummary(r, "done", done)
	addAuditSummary(r, "failed", len(items)-done)
	writeData(w, r, http.StatusOK, map[string]any{"items": items, "done": done, "failed": len(items) - done})
	return nil
}

// itemCode is the error code of one item of a batch ("" when done).
func itemCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrVMLive):
		return CodeVMLive
	}
	return CodeVMNotFound
}

// VMGroup is a VM group.
type VMGroup struct {
	ID            string          `json:"id"`
	Name          string          `json:"name"`
	Description   string          `json:"description"`
	Rule          store.GroupRule `json:"rule"`
	StaticMembers int64           `json:"static_members"`
	Members       int64           `json:"members"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	CreatedBy     string          `json:"created_by"`
}

func groupOf(g *store.VMGroup) VMGroup {
	return VMGroup{ID: g.ID.String(), Name: g.Name, Description: g.Description, Rule: g.Rule, StaticMembers: g.StaticMembers, Members: g.Members,
		CreatedAt: g.CreatedAt.UTC(), UpdatedAt: g.UpdatedAt.UTC(), CreatedBy: g.CreatedBy}
}

func (h *vmGroupsResource) list(w http.ResponseWriter, r *http.Request) error {
	groups, err := h.a.inventory.VMGroups(r.Context())
	if err != nil {
		return err
	}
	items := make([]VMGroup, 0, len(groups))
	for i := range groups {
		items = append(items, groupOf(&groups[i]))
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": items})
	return nil
}

// groupInput is the body of POST /vm-groups and PUT /vm-groups/{id}.
type groupInput struct {
	Name        *string          `json:"name"`
	Description *string          `json:"description"`
	Rule        *store.GroupRule `json:"rule"`
}

func (b *groupInput) validate(v *fieldErrors) {
	if v.required("name", b.Name != nil && *b.Name != "") {
		v.maxLen("name", *b.Name, 128)
	}
	if b.Description != nil {
		v.maxLen("description", *b.Description, maxDescription)
	}
	if b.Rule == nil {
		return
	}
	rl := b.Rule
	if rl.Site != "" {
		v.pattern("rule.site", rl.Site, siteNameRE, "a site name")
	}
	v.maxLen("rule.name_glob", rl.NameGlob, 255)
	v.maxLen("rule.folder", rl.Folder, 1024)
	v.maxLen("rule.cluster", rl.Cluster, 255)
	v.maxLen("rule.host", rl.Host, 255)
	if len(rl.Tags) > maxLabels {
		v.add("rule.tags", FieldOutOfRange, map[string]any{"min": 0, "max": maxLabels})
	}
	for i, t := range rl.Tags {
		if t == "" || utf8.RuneCountInString(t) > 255 {
			v.add(fmt.Sprintf("rule.tags[%d]", i), FieldInvalidFormat, map[string]any{"format": "category/name"})
		}
	}
	validateLabels(v, "rule.labels", rl.Labels)
}

func (b *groupInput) input() store.GroupInput {
	in := store.GroupInput{Name: *b.Name, Description: deref(b.Description)}
	if b.Rule != nil {
		in.Rule = *b.Rule
	}
	return in
}

// groupChange says what the caller may change of groups that are data
// scopes: only a caller who may set scopes (user:write, unrestricted).
func groupChange(r *http.Request) store.GroupChange {
	p, ok := auth.PrincipalFrom(r.Context())
	return store.GroupChange{MayChangeScopes: ok && p.Has(auth.PermUserWrite) && p.Scope.Unrestricted()}
}

// guardRule refuses a rule a caller with a restricted scope may not write:
// one that does not name one of the caller's sites would match VMs of
// every site.
func guardRule(r *http.Request, rule *store.GroupRule) error {
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok || p.Scope.Unrestricted() || rule.Empty() || slices.Contains(p.Scope.Sites, rule.Site) {
		return nil
	}
	e := newError(http.StatusForbidden, CodeEscalation)
	e.Data = map[string]any{"reason": "rule_outside_scope"}
	return e
}

func groupWriteError(err error) error {
	switch {
	case errors.Is(err, store.ErrGroupNameTaken):
		return newError(http.StatusConflict, CodeGroupNameTaken)
	case errors.Is(err, store.ErrGroupInScope):
		e := newError(http.StatusForbidden, CodeEscalation)
		e.Data = map[string]any{"reason": "group_in_a_data_scope"}
		return e
	case errors.Is(err, store.ErrLabelRuleInScope):
		return validationError(FieldError{Field: "rule.labels", Code: FieldLabelRuleScope, Params: map[string]any{"name": "this group"}})
	}
	return notFound(err, CodeGroupNotFound)
}

func (h *vmGroupsResource) create(w http.ResponseWriter, r *http.Request) error {
	var body groupInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	in := body.input()
	if err := guardRule(r, &in.Rule); err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	id, err := h.a.inventory.CreateVMGroup(r.Context(), in, principalLabel(p))
	if err != nil {
		return groupWriteError(err)
	}
	setAuditResource(r, id.String())
	return h.respond(w, r, http.StatusCreated, id)
}

func (h *vmGroupsResource) respond(w http.ResponseWriter, r *http.Request, status int, id uuid.UUID) error {
	g, err := h.a.inventory.VMGroupByID(r.Context(), id)
	if err != nil {
		return notFound(err, CodeGroupNotFound)
	}
	writeData(w, r, status, groupOf(&g))
	return nil
}

func pathGroupID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		return uuid.Nil, newError(http.StatusNotFound, CodeGroupNotFound)
	}
	return id, nil
}

func (h *vmGroupsResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathGroupID(r)
	if err != nil {
		return err
	}
	return h.respond(w, r, http.StatusOK, id)
}

func (h *vmGroupsResource) update(w http.ResponseWriter, r *http.Request) error {
	id, err := pathGroupID(r)
	if err != nil {
		return err
	}
	var body groupInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	in := body.input()
	if err := guardRule(r, &in.Rule); err != nil {
		return err
	}
	if err := h.a.inventory.UpdateVMGroup(r.Context(), id, in, groupChange(r)); err != nil {
		return groupWriteError(err)
	}
	return h.respond(w, r, http.StatusOK, id)
}

func (h *vmGroupsResource) delete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathGroupID(r)
	if err != nil {
		return err
	}
	if err := h.a.inventory.DeleteVMGroup(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrGroupInScope) {
			return newError(http.StatusConflict, CodeGroupInScope)
		}
		return notFound(err, CodeGroupNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

// vmList is the body of the member routes.
type vmList struct {
	VMs []string `json:"vms"`
}

func (b *vmList) validate(v *fieldErrors) { validateVMIDs(v, b.VMs) }

func (h *vmGroupsResource) members(add bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathGroupID(r)
		if err != nil {
			return err
		}
		var body vmList
		if err := decodeJSON(r, &body); err != nil {
			return err
		}
		if len(body.VMs) > maxGroupMembers {
			return validationError(FieldError{Field: "vms", Code: FieldOutOfRange, Params: map[string]any{"min": 1, "max": maxGroupMembers}})
		}
		refs := make([]store.VMRef, len(body.VMs))
		items := make([]BatchItem, len(body.VMs))
		for i, vm := range body.VMs {
			refs[i].Source, refs[i].Moref, _ = parseObjectID(vm)
			items[i].ID = vm
		}
		res, err := h.a.inventory.SetGroupMembers(r.Context(), id, refs, add, groupChange(r))
		if err != nil {
			return groupWriteError(err)
		}
		done := 0
		for i, e := range res {
			items[i].OK, items[i].Code = e == nil, itemCode(e)
			if e == nil {
				done++
			}
		}
		writeData(w, r, http.StatusOK, map[string]any{"items": items, "done": done, "failed": len(items) - done})
		return nil
	}
}

// vmGroupSchemas are the OpenAPI schemas of these routes.
func vmGroupSchemas() map[string]any {
	labels := map[string]any{"type": "object", "additionalProperties": str}
	rule := objectSchema(map[string]any{"site": str, "name_glob": desc(str, "* and ?, any case"), "folder": desc(str, "inventory path prefix"),
		"tags": desc(strList, "any of these tags"), "cluster": desc(str, "cluster name"), "host": desc(str, "host name"),
		"labels": desc(labels, "all of these user labels")})
	items := objectSchema(map[string]any{"items": arrayOf(objectSchema(map[string]any{"id": str, "ok": boolean, "code": desc(str, "why not, when not ok")})),
		"done": integer, "failed": integer})
	return map[string]any{
		"VMPatch": objectSchema(map[string]any{"description": str, "owner": str, "labels": desc(labels, "replaces the whole set")}),
		"VMBatch": objectSchema(map[string]any{"vms": desc(strList, "VM ids, at most 500"),
			"action": desc(str, "add_to_group, remove_from_group, set_labels or forget"), "group": desc(str, "for the group actions"),
			"labels": desc(labels, "for set_labels")}, "vms", "action"),
		"VMBatchResult": items,
		"VMList":        objectSchema(map[string]any{"vms": desc(strList, "VM ids")}, "vms"),
		"VMGroupRule":   rule,
		"VMGroupInput":  objectSchema(map[string]any{"name": str, "description": str, "rule": ref("VMGroupRule")}, "name"),
		"VMGroup": objectSchema(map[string]any{"id": uuidStr, "name": str, "description": str, "rule": ref("VMGroupRule"),
			"static_members": desc(integer, "static members in the caller's data scope"),
			"members":        desc(integer, "all members (static and by rule) in the caller's data scope"),
			"created_at":     dateTime, "updated_at": dateTime, "created_by": str}),
	}
}
