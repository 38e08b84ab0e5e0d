package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// No escalation. Every change to users, roles and API tokens is made on
// behalf of an actor (the request's *Principal) and is judged, inside the
// transaction that applies it, against what that actor holds: its
// effective permissions (after role inheritance; for an API token, the
// token's own, already cut down to its owner's) and its data scope.
//
//   - Nobody grants a permission, role or scope they do not hold: the
//     effective permissions a change hands out must be a subset of the
//     actor's, and a scope it hands out must lie within the actor's.
//   - Nobody changes their own roles or scope (ErrSelfModification).
//   - Nobody acts on a user (edit, delete, lock, unlock, reset password,
//     set roles, set scope) or a custom role (edit, set permissions,
//     delete) that holds more than they do.
//
// Refusals are *EscalationError, which matches ErrEscalation.

var (
	// ErrEscalation means a change would give someone a permission or data
	// scope the actor does not hold, or would act on a user or role that
	// holds more than the actor. Every *EscalationError matches it.
	ErrEscalation = errors.New("auth: the change exceeds what the caller holds")
	// ErrSelfModification means an actor tried to change their own roles or
	// data scope.
	ErrSelfModification = errors.New("auth: you cannot change your own roles or data scope")
	// ErrSessionRequired means an API token tried to do what only an
	// interactive session may (mint API tokens).
	ErrSessionRequired = errors.New("auth: this needs an interactive session, not an API token")
	// errNoActor means a mutation was called without an actor: a
	// programming error, refused rather than applied unchecked.
	errNoActor = errors.New("auth: no acting principal")
)

// EscalationError is a refusal under the no-escalation rule.
type EscalationError struct {
	// Subject says what exceeded the actor: "grant" for what the change
	// hands out, "user" or "role" for what it acts on.
	Subject string
	// Missing are the permissions at stake that the actor lacks, sorted.
	// It is filled only for grants, which the caller spelled out: it never
	// reveals what another user holds.
	Missing []string
	// Scope is set when the data scope at stake is wider than the actor's.
	Scope bool
}

func (e *EscalationError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, "permissions "+strings.Join(e.Missing, ", "))
	} else if !e.Scope {
		parts = append(parts, "permissions")
	}
	if e.Scope {
		parts = append(parts, "data scope")
	}
	return fmt.Sprintf("auth: the %s exceeds the caller's %s", e.Subject, strings.Join(parts, " and "))
}

// Is makes every *EscalationError match ErrEscalation.
func (e *EscalationError) Is(target error) bool { return target == ErrEscalation }

// missingPermissions returns the permissions of want not in have, sorted
// and without duplicates.
func missingPermissions(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return sortedUnique(out)
}

// CheckGrant reports whether actor may hand out the permissions perms and,
// when sc is not nil, the data scope *sc. It returns nil, errNoActor, or an
// *EscalationError naming the permissions the actor lacks.
func CheckGrant(actor *Principal, perms []string, sc *Scope) error {
	if actor == nil {
		return errNoActor
	}
	missing := missingPermissions(perms, actor.Permissions)
	wide := sc != nil && !sc.Within(actor.Scope)
	if len(missing) > 0 || wide {
		return &EscalationError{Subject: "grant", Missing: missing, Scope: wide}
	}
	return nil
}

// checkOver reports whether actor may act on a user or role (subject)
// holding perms and, when sc is not nil, scope *sc. Unlike CheckGrant its
// refusal does not list the permissions: they are someone else's.
func checkOver(actor *Principal, subject string, perms []string, sc *Scope) error {
	if actor == nil {
		return errNoActor
	}
	over := len(missingPermissions(perms, actor.Permissions)) > 0
	wide := sc != nil && !sc.Within(actor.Scope)
	if over || wide {
		return &EscalationError{Subject: subject, Scope: wide}
	}
	return nil
}

// notSelf refuses, with err, an actor acting on their own account (through
// a session or through one of their API tokens).
func notSelf(actor *Principal, target uuid.UUID, err error) error {
	if actor == nil {
		return errNoActor
	}
	if actor.UserID == target {
		return err
	}
	return nil
}

// authorizeOver locks user target's row for the rest of tx and checks that
// actor may act on it: the target's effective permissions and scope, read
// in tx, must not exceed the actor's. It returns ErrNotFound for a missing
// user.
func authorizeOver(ctx context.Context, tx pgx.Tx, actor *Principal, target uuid.UUID) error {
	if actor == nil {
		return errNoActor
	}
	// The row lock serializes every change to this user, so the check and
	// the change it guards see the same roles and scope.
	var sc Scope
	err := tx.QueryRow(ctx, `SELECT scope_sites, scope_vm_groups FROM users WHERE id = $1 FOR UPDATE`, target).Scan(&sc.Sites, &sc.VMGroups)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("lock user: %w", err)
	}
	perms, err := userPermissionsTx(ctx, tx, target)
	if err != nil {
		return err
	}
	return checkOver(actor, "user", perms, &sc)
}

// userPermissionsTx returns the effective permissions of user id as tx
// sees them.
func userPermissionsTx(ctx context.Context, tx pgx.Tx, id uuid.UUID) ([]string, error) {
	var perms []string
	if err := tx.QueryRow(ctx, `SELECT ARRAY(`+effectivePermissionsSQL("$1")+`)`, id).Scan(&perms); err != nil {
		return nil, fmt.Errorf("user permissions: %w", err)
	}
	return perms, nil
}

// checkUserGrant checks, after a change to user id's roles in tx, that the
// user's effective permissions are ones actor may grant.
func checkUserGrant(ctx context.Context, tx pgx.Tx, actor *Principal, id uuid.UUID) error {
	perms, err := userPermissionsTx(ctx, tx, id)
	if err != nil {
		return err
	}
	return CheckGrant(actor, perms, nil)
}

// rolePermissionsTx returns the effective permissions of role id (its own
// and its ancestors') as tx sees them.
func rolePermissionsTx(ctx context.Context, tx pgx.Tx, id uuid.UUID) ([]string, error) {
	var perms []string
	err := tx.QueryRow(ctx, `SELECT ARRAY(WITH RECURSIVE rr(id) AS (SELECT $1::uuid UNION SELECT rp.parent_id FROM role_parents rp JOIN rr ON rp.role_id = rr.id)
		SELECT DISTINCT permission FROM role_permissions WHERE role_id IN (SELECT id FROM rr) ORDER BY permission)`, id).Scan(&perms)
	if err != nil {
		return nil, fmt.Errorf("role permissions: %w", err)
	}
	return perms, nil
}

// checkRoleHolders refuses a change that adds permissions to role id when
// actor's scope is restricted and some user holding the role (directly or
// through a role inheriting from it) has a scope beyond the actor's: the
// new permissions would reach data the actor cannot.
func checkRoleHolders(ctx context.Context, tx pgx.Tx, actor *Principal, id uuid.UUID) error {
	if actor.Scope.Unrestricted() {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT u.scope_sites, u.scope_vm_groups FROM users u WHERE EXISTS (
		WITH RECURSIVE rr(id) AS (SELECT role_id FROM user_roles WHERE user_id = u.id
			UNION SELECT rp.parent_id FROM role_parents rp JOIN rr ON rp.role_id = rr.id)
		SELECT 1 FROM rr WHERE id = $1)`, id)
	if err != nil {
		return fmt.Errorf("role holders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sc Scope
		if err := rows.Scan(&sc.Sites, &sc.VMGroups); err != nil {
			return fmt.Errorf("role holders: %w", err)
		}
		if !sc.Within(actor.Scope) {
			return &EscalationError{Subject: "grant", Scope: true}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("role holders: %w", err)
	}
	return nil
}
