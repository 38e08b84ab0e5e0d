package auth

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The permissions of vmpulse. A route declares exactly one of these (or one
// of the non-permission access levels of the REST API).
const (
	PermVMRead       = "vm:read"
	PermVMWrite      = "vm:write"
	PermMetricRead   = "metric:read"
	PermAlertRead    = "alert:read"
	PermAlertWrite   = "alert:write"
	PermUserRead     = "user:read"
	PermUserWrite    = "user:write"
	PermRoleRead     = "role:read"
	PermRoleWrite    = "role:write"
	PermSystemRead   = "system:read"
	PermSystemWrite  = "system:write"
	PermAuditRead    = "audit:read"
	PermSessionAdmin = "session:admin"
	PermBackupAdmin  = "backup:admin"
)

// PermissionInfo describes one permission.
type PermissionInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// PermissionGroup is one branch of the permission tree: a resource and the
// permissions on it.
type PermissionGroup struct {
	Resource    string           `json:"resource"`
	Description string           `json:"description"`
	Permissions []PermissionInfo `json:"permissions"`
}

// Catalog is the tree of all permissions, in display order.
var Catalog = []PermissionGroup{
	{"vm", "Virtual machines, hosts, clusters, datastores, sites and VM groups", []PermissionInfo{
		{PermVMRead, "View inventory"},
		{PermVMWrite, "Edit user fields, groups, forget VMs, request resync"},
	}},
	{"metric", "Real-time and historical metrics", []PermissionInfo{
		{PermMetricRead, "Query and export metrics"},
	}},
	{"alert", "Alert rules, alerts, silences and notification channels", []PermissionInfo{
		{PermAlertRead, "View rules, alerts and silences"},
		{PermAlertWrite, "Manage rules, acknowledge and resolve alerts, manage silences and channels"},
	}},
	{"user", "User accounts", []PermissionInfo{
		{PermUserRead, "View users and their effective permissions"},
		{PermUserWrite, "Create, edit, delete, lock and unlock users; reset passwords; assign roles and scope"},
	}},
	{"role", "Roles and permissions", []PermissionInfo{
		{PermRoleRead, "View roles and the permission tree"},
		{PermRoleWrite, "Create, edit and delete custom roles"},
	}},
	{"system", "Aggregator health, agents and settings", []PermissionInfo{
		{PermSystemRead, "View health, info, agents, storage, plugins and jobs"},
		{PermSystemWrite, "Change settings, enroll and revoke agents"},
	}},
	{"audit", "Operation log and login log", []PermissionInfo{
		{PermAuditRead, "View, export and verify the operation and login logs"},
	}},
	{"session", "Online users", []PermissionInfo{
		{PermSessionAdmin, "View online users and force logout"},
	}},
	{"backup", "Backups", []PermissionInfo{
		{PermBackupAdmin, "Create, download, restore and schedule backups"},
	}},
}

// AllPermissions lists every permission name in catalog order.
func AllPermissions() []string {
	var out []string
	for _, g := range Catalog {
		for _, p := range g.Permissions {
			out = append(out, p.Name)
		}
	}
	return out
}

// KnownPermission reports whether name is in the catalog.
func KnownPermission(name string) bool {
	return slices.Contains(AllPermissions(), name)
}

// BuiltinRole is a role that exists in every installation and cannot be
// edited or deleted through the API.
type BuiltinRole struct {
	Name        string
	Description string
	Permissions []string
}

// Builtin roles.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
	RoleAuditor  = "auditor"
)

// BuiltinRoles returns the built-in roles and their permissions.
func BuiltinRoles() []BuiltinRole {
	return []BuiltinRole{
		{RoleAdmin, "Everything", AllPermissions()},
		{RoleOperator, "VMs, alerts, read system", []string{PermVMRead, PermVMWrite, PermMetricRead, PermAlertRead, PermAlertWrite, PermSystemRead}},
		{RoleViewer, "Read-only VMs, metrics and alerts", []string{PermVMRead, PermMetricRead, PermAlertRead}},
		{RoleAuditor, "Audit and login logs only", []string{PermAuditRead}},
	}
}

// builtinRoleID derives a fixed id from a built-in role's name, so that
// several aggregators syncing at once converge on the same rows.
func builtinRoleID(name string) uuid.UUID {
	return uuid.NewSHA1(uuid.MustParse("6f0d5d3e-8f7b-4a57-9d55-2f2a4c2b7a10"), []byte("role:"+name))
}

// SyncBuiltins creates the built-in roles if missing and sets their
// permissions to exactly the catalog's. It is idempotent and safe to run
// from several aggregators at once.
func SyncBuiltins(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.auth.builtins'))`); err != nil {
			return fmt.Errorf("auth: sync builtin roles: lock: %w", err)
		}
		for _, r := range BuiltinRoles() {
			id := builtinRoleID(r.Name)
			if _, err := tx.Exec(ctx, `INSERT INTO roles (id, name, description, builtin) VALUES ($1, $2, $3, true)
				ON CONFLICT (name) DO UPDATE SET builtin = true, description = EXCLUDED.description`, id, r.Name, r.Description); err != nil {
				return fmt.Errorf("auth: sync builtin role %s: %w", r.Name, err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM role_permissions WHERE role_id = (SELECT id FROM roles WHERE name = $1) AND NOT (permission = ANY($2))`, r.Name, r.Permissions); err != nil {
				return fmt.Errorf("auth: sync builtin role %s: %w", r.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO role_permissions (role_id, permission)
				SELECT (SELECT id FROM roles WHERE name = $1), p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING`, r.Name, r.Permissions); err != nil {
				return fmt.Errorf("auth: sync builtin role %s: %w", r.Name, err)
			}
		}
		return nil
	})
}
