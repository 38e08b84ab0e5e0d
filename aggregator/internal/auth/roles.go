package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Role is a role as the API shows it. Permissions are the role's own;
// Effective adds everything inherited from Parents, transitively.
type Role struct {
	ID          uuid.UUID `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Builtin     bool      `json:"builtin"`
	Parents     []string  `json:"parents"`
	Permissions []string  `json:"permissions"`
	Effective   []string  `json:"effective_permissions"`
	Users       int       `json:"users"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// RoleInput are the editable fields of a role.
type RoleInput struct {
	Name        string
	Description string
	Parents     []string // role names
}

const roleColumns = `r.id, r.name, r.description, r.builtin,
	ARRAY(SELECT p.name FROM role_parents rp JOIN roles p ON p.id = rp.parent_id WHERE rp.role_id = r.id ORDER BY p.name),
	ARRAY(SELECT permission FROM role_permissions WHERE role_id = r.id ORDER BY permission),
	ARRAY(WITH RECURSIVE rr(id) AS (SELECT r.id UNION SELECT rp.parent_id FROM role_parents rp JOIN rr ON rp.role_id = rr.id)
		SELECT DISTINCT permission FROM role_permissions WHERE role_id IN (SELECT id FROM rr) ORDER BY permission),
	(SELECT count(*) FROM user_roles WHERE role_id = r.id), r.created_at, r.updated_at`

func scanRole(row pgx.Row) (*Role, error) {
	var r Role
	err := row.Scan(&r.ID, &r.Name, &r.Description, &r.Builtin, &r.Parents, &r.Permissions, &r.Effective, &r.Users, &r.CreatedAt, &r.UpdatedAt)
	return &r, err
}

// ListRoles returns every role, by name.
func (s *Service) ListRoles(ctx context.Context) ([]Role, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+roleColumns+` FROM roles r ORDER BY r.builtin DESC, r.name`)
	if err != nil {
		return nil, fmt.Errorf("auth: list roles: %w", err)
	}
	defer rows.Close()
	out := []Role{}
	for rows.Next() {
		r, err := scanRole(rows)
		if err != nil {
			return nil, fmt.Errorf("auth: list roles: %w", err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: list roles: %w", err)
	}
	return out, nil
}

// GetRole returns one role or ErrNotFound.
func (s *Service) GetRole(ctx context.Context, id uuid.UUID) (*Role, error) {
	r, err := scanRole(s.pool.QueryRow(ctx, `SELECT `+roleColumns+` FROM roles r WHERE r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("auth: get role: %w", err)
	}
	return r, nil
}

// CreateRole creates a custom role on behalf of actor. Its effective
// permissions (its own and its parents', transitively) must be ones actor
// holds (*EscalationError otherwise).
func (s *Service) CreateRole(ctx context.Context, actor *Principal, in RoleInput, perms []string) (*Role, error) {
	if actor == nil {
		return nil, errNoActor
	}
	id := uuid.New()
	now := s.now()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO roles (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`,
			id, in.Name, in.Description, now); err != nil {
			return roleConflict(err)
		}
		if err := setParents(ctx, tx, id, in.Parents); err != nil {
			return err
		}
		if err := setPermissions(ctx, tx, id, perms); err != nil {
			return err
		}
		eff, err := rolePermissionsTx(ctx, tx, id)
		if err != nil {
			return err
		}
		return CheckGrant(actor, eff, nil)
	})
	if err != nil {
		return nil, wrap("auth: create role", err)
	}
	return s.GetRole(ctx, id)
}

// UpdateRole replaces a custom role's name, description and parents on
// behalf of actor (see changeRole for what actor must hold).
func (s *Service) UpdateRole(ctx context.Context, actor *Principal, id uuid.UUID, in RoleInput) (*Role, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := changeRole(ctx, tx, actor, id, func() error {
			if _, err := tx.Exec(ctx, `UPDATE roles SET name = $2, description = $3, updated_at = $4 WHERE id = $1`, id, in.Name, in.Description, s.now()); err != nil {
				return roleConflict(err)
			}
			return setParents(ctx, tx, id, in.Parents)
		})
		if err != nil {
			return err
		}
		return ensureAnyAdmin(ctx, tx)
	})
	if err != nil {
		return nil, wrap("auth: update role", err)
	}
	return s.GetRole(ctx, id)
}

// SetRolePermissions replaces a custom role's own permissions on behalf of
// actor (see changeRole for what actor must hold).
func (s *Service) SetRolePermissions(ctx context.Context, actor *Principal, id uuid.UUID, perms []string) (*Role, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := changeRole(ctx, tx, actor, id, func() error {
			if err := setPermissions(ctx, tx, id, perms); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE roles SET updated_at = $2 WHERE id = $1`, id, s.now())
			return err
		})
		if err != nil {
			return err
		}
		return ensureAnyAdmin(ctx, tx)
	})
	if err != nil {
		return nil, wrap("auth: set role permissions", err)
	}
	return s.GetRole(ctx, id)
}

// DeleteRole deletes a custom role on behalf of actor, who must hold every
// effective permission of the role (*EscalationError otherwise); users
// holding it lose it.
func (s *Service) DeleteRole(ctx context.Context, actor *Principal, id uuid.UUID) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockCustomRole(ctx, tx, id); err != nil {
			return err
		}
		old, err := rolePermissionsTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkOver(actor, "role", old, nil); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM roles WHERE id = $1`, id); err != nil {
			return err
		}
		return ensureAnyAdmin(ctx, tx)
	})
	return wrap("auth: delete role", err)
}

// changeRole locks custom role id and applies change to it in tx, on
// behalf of actor, who must hold every effective permission of the role
// both before the change (nobody edits a role beyond their own) and after
// it (nobody grants a permission they lack, whether directly or through a
// parent). A change that adds permissions is also refused to an actor with
// a restricted scope when a user holding the role has a wider scope.
func changeRole(ctx context.Context, tx pgx.Tx, actor *Principal, id uuid.UUID, change func() error) error {
	if actor == nil {
		return errNoActor
	}
	if err := lockCustomRole(ctx, tx, id); err != nil {
		return err
	}
	old, err := rolePermissionsTx(ctx, tx, id)
	if err != nil {
		return err
	}
	if err := checkOver(actor, "role", old, nil); err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	eff, err := rolePermissionsTx(ctx, tx, id)
	if err != nil {
		return err
	}
	if err := CheckGrant(actor, eff, nil); err != nil {
		return err
	}
	if len(missingPermissions(eff, old)) > 0 {
		return checkRoleHolders(ctx, tx, actor, id)
	}
	return nil
}

func lockCustomRole(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
	var builtin bool
	err := tx.QueryRow(ctx, `SELECT builtin FROM roles WHERE id = $1 FOR UPDATE`, id).Scan(&builtin)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if builtin {
		return ErrBuiltinRole
	}
	return nil
}

func setParents(ctx context.Context, tx pgx.Tx, id uuid.UUID, parents []string) error {
	ids, err := roleIDs(ctx, tx, "parents", sortedUnique(parents))
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM role_parents WHERE role_id = $1`, id); err != nil {
		return err
	}
	for _, p := range ids {
		if p == id {
			return ErrRoleCycle
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO role_parents (role_id, parent_id) SELECT $1, unnest($2::uuid[])`, id, ids); err != nil {
		return err
	}
	var cycle bool
	if err := tx.QueryRow(ctx, `WITH RECURSIVE up(id) AS (SELECT parent_id FROM role_parents WHERE role_id = $1
			UNION SELECT rp.parent_id FROM role_parents rp JOIN up ON rp.role_id = up.id)
		SELECT EXISTS (SELECT 1 FROM up WHERE id = $1)`, id).Scan(&cycle); err != nil {
		return err
	}
	if cycle {
		return ErrRoleCycle
	}
	return nil
}

func setPermissions(ctx context.Context, tx pgx.Tx, id uuid.UUID, perms []string) error {
	perms = sortedUnique(perms)
	for _, p := range perms {
		if !KnownPermission(p) {
			return &UnknownError{Field: "permissions", Name: p}
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM role_permissions WHERE role_id = $1`, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO role_permissions (role_id, permission) SELECT $1, unnest($2::text[])`, id, perms)
	return err
}

func roleConflict(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return &ConflictError{Field: "name"}
	}
	return err
}
