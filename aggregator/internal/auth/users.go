package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// User is a user account as the API shows it.
type User struct {
	ID           uuid.UUID  `json:"id"`
	Username     string     `json:"username"`
	Email        string     `json:"email"`
	DisplayName  string     `json:"display_name"`
	Roles        []string   `json:"roles"`
	Locked       bool       `json:"locked"`
	LockedUntil  *time.Time `json:"locked_until,omitempty"`
	FailedLogins int        `json:"failed_logins"`
	Scope        Scope      `json:"scope"`
	LastLoginAt  *time.Time `json:"last_login_at,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// UserInput are the editable fields of a user.
type UserInput struct {
	Username    string
	Email       string
	DisplayName string
}

// ListUsersQuery filters and pages the user list.
type ListUsersQuery struct {
	Q        string // substring of username, email or display name
	Role     string
	Locked   *bool
	Sort     []SortKey
	Page     int // 1-based
	PageSize int
}

// SortKey is one ORDER BY term; Field is an API field name.
type SortKey struct {
	Field string
	Desc  bool
}

// UserSortFields are the fields the user list can be sorted by.
var UserSortFields = map[string]string{
	"username":      "u.username",
	"email":         "u.email",
	"created_at":    "u.created_at",
	"last_login_at": "u.last_login_at",
}

const userColumns = `u.id, u.username, u.email, u.display_name,
	ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id ORDER BY r.name),
	u.locked, u.locked_until, u.failed_logins, u.scope_sites, u.scope_vm_groups, u.last_login_at, u.created_at, u.updated_at`

func scanUser(row pgx.Row) (*User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.DisplayName, &u.Roles, &u.Locked, &u.LockedUntil, &u.FailedLogins,
		&u.Scope.Sites, &u.Scope.VMGroups, &u.LastLoginAt, &u.CreatedAt, &u.UpdatedAt)
	return &u, err
}

// ListUsers returns one page of users and the total matching.
func (s *Service) ListUsers(ctx context.Context, q ListUsersQuery) ([]User, int, error) {
	where := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if q.Q != "" {
		p := arg("%" + escapeLike(strings.ToLower(q.Q)) + "%")
		where = append(where, fmt.Sprintf("(lower(u.username) LIKE %[1]s OR lower(u.email) LIKE %[1]s OR lower(u.display_name) LIKE %[1]s)", p))
	}
	if q.Role != "" {
		where = append(where, fmt.Sprintf("EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id AND r.name = %s)", arg(q.Role)))
	}
	if q.Locked != nil {
		where = append(where, fmt.Sprintf("u.locked = %s", arg(*q.Locked)))
	}
	cond := strings.Join(where, " AND ")
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM users u WHERE `+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("auth: list users: %w", err)
	}
	order := orderBy(q.Sort, UserSortFields, "u.username")
	sql := fmt.Sprintf(`SELECT %s FROM users u WHERE %s ORDER BY %s, u.id LIMIT %s OFFSET %s`,
		userColumns, cond, order, arg(q.PageSize), arg((q.Page-1)*q.PageSize))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("auth: list users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("auth: list users: %w", err)
		}
		out = append(out, *u)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("auth: list users: %w", err)
	}
	return out, total, nil
}

// GetUser returns one user or ErrNotFound.
func (s *Service) GetUser(ctx context.Context, id uuid.UUID) (*User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("auth: get user: %w", err)
	}
	return u, nil
}

// CreateUser creates a user with the given roles (by name) on behalf of
// actor. The roles' effective permissions must be ones actor holds
// (*EscalationError otherwise). The new user gets actor's data scope, so a
// user restricted to some sites can only create users restricted the same
// way (an unrestricted actor creates unrestricted users). The password must
// pass CheckPassword.
func (s *Service) CreateUser(ctx context.Context, actor *Principal, in UserInput, password string, roles []string) (*User, error) {
	if actor == nil {
		return nil, errNoActor
	}
	return createUser(ctx, s.pool, in, password, roles, actor.Scope, func(tx pgx.Tx, id uuid.UUID) error {
		return checkUserGrant(ctx, tx, actor, id)
	})
}

// createUser creates a user with roles and scope sc; check, if not nil,
// runs in the transaction after the roles are set and can refuse the user.
func createUser(ctx context.Context, pool *pgxpool.Pool, in UserInput, password string, roles []string, sc Scope,
	check func(tx pgx.Tx, id uuid.UUID) error) (*User, error) {
	if err := CheckPassword(password, in.Username, in.Email); err != nil {
		return nil, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	id := uuid.New()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, username, email, display_name, password_hash, scope_sites, scope_vm_groups)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, in.Username, in.Email, in.DisplayName, hash, nonNil(sortedUnique(sc.Sites)), nonNil(sortedUnique(sc.VMGroups))); err != nil {
			return userConflict(err)
		}
		if err := setUserRoles(ctx, tx, id, roles); err != nil {
			return err
		}
		if check != nil {
			return check(tx, id)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("auth: create user", err)
	}
	return getUser(ctx, pool, id)
}

func getUser(ctx context.Context, pool *pgxpool.Pool, id uuid.UUID) (*User, error) {
	u, err := scanUser(pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("auth: get user: %w", err)
	}
	return u, nil
}

// UpdateUser replaces a user's editable fields on behalf of actor, who
// must hold everything the user holds (*EscalationError otherwise).
func (s *Service) UpdateUser(ctx context.Context, actor *Principal, id uuid.UUID, in UserInput) (*User, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := authorizeOver(ctx, tx, actor, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE users SET username = $2, email = $3, display_name = $4, updated_at = $5 WHERE id = $1`,
			id, in.Username, in.Email, in.DisplayName, s.now())
		return userConflict(err)
	})
	if err != nil {
		return nil, wrap("auth: update user", err)
	}
	return s.GetUser(ctx, id)
}

// DeleteUser deletes a user, its sessions and API tokens, on behalf of
// actor. Nobody deletes themselves (ErrSelf) or a user holding more than
// they do (*EscalationError), and the last administrator cannot be deleted.
func (s *Service) DeleteUser(ctx context.Context, actor *Principal, id uuid.UUID) error {
	if err := notSelf(actor, id, ErrSelf); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := authorizeOver(ctx, tx, actor, id); err != nil {
			return err
		}
		if err := ensureOtherAdmin(ctx, tx, id); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
	return wrap("auth: delete user", err)
}

// ResetPassword sets a user's password (generated if empty, and returned)
// and ends all of the user's sessions, on behalf of actor. Nobody resets
// their own password this way (ErrSelf: ChangePassword asks for the current
// one) or the password of a user holding more than they do
// (*EscalationError): whoever knows the new password is that user.
func (s *Service) ResetPassword(ctx context.Context, actor *Principal, id uuid.UUID, password string) (string, error) {
	if err := notSelf(actor, id, ErrSelf); err != nil {
		return "", err
	}
	u, err := s.GetUser(ctx, id)
	if err != nil {
		return "", err
	}
	if password == "" {
		if password, err = GeneratePassword(u.Username, u.Email); err != nil {
			return "", err
		}
	} else if err := CheckPassword(password, u.Username, u.Email); err != nil {
		return "", err
	}
	check := func(tx pgx.Tx) error { return authorizeOver(ctx, tx, actor, id) }
	if err := s.setPassword(ctx, id, password, uuid.Nil, "password_reset", check); err != nil {
		return "", err
	}
	return password, nil
}

// ChangePassword changes the caller's own password after checking the
// current one, and ends the user's other sessions (keep stays open).
func (s *Service) ChangePassword(ctx context.Context, id, keep uuid.UUID, current, next string) error {
	var hash, username, email string
	err := s.pool.QueryRow(ctx, `SELECT password_hash, username, email FROM users WHERE id = $1`, id).Scan(&hash, &username, &email)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("auth: change password: %w", err)
	}
	ok, err := VerifyPassword(hash, current)
	if err != nil {
		return fmt.Errorf("auth: change password: %w", err)
	}
	if !ok {
		return ErrWrongPassword
	}
	if err := CheckPassword(next, username, email); err != nil {
		return err
	}
	if current == next {
		return &PolicyError{Violations: []string{PolicySameAsCurrent}}
	}
	return s.setPassword(ctx, id, next, keep, "password_changed", nil)
}

// setPassword stores a new password for user id and ends the user's
// sessions but keep. check, if not nil, runs first in the transaction and
// can refuse the change.
func (s *Service) setPassword(ctx context.Context, id uuid.UUID, password string, keep uuid.UUID, reason string, check func(tx pgx.Tx) error) error {
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	now := s.now()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3, failed_logins = 0, locked_until = NULL WHERE id = $1`, id, hash, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND id <> $4 AND revoked_at IS NULL`, id, now, reason, keep)
		return err
	})
	return wrap("auth: set password", err)
}

// LockUser locks an account on behalf of actor: logins are refused and its
// sessions and API tokens stop working at once. Nobody locks themselves
// (ErrSelf), a user holding more than they do (*EscalationError), or the
// last administrator (ErrLastAdmin).
func (s *Service) LockUser(ctx context.Context, actor *Principal, id uuid.UUID) error {
	if err := notSelf(actor, id, ErrSelf); err != nil {
		return err
	}
	now := s.now()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := authorizeOver(ctx, tx, actor, id); err != nil {
			return err
		}
		if err := ensureOtherAdmin(ctx, tx, id); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE users SET locked = true, updated_at = $2 WHERE id = $1`, id, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoke_reason = 'user_locked' WHERE user_id = $1 AND revoked_at IS NULL`, id, now)
		return err
	})
	return wrap("auth: lock user", err)
}

// UnlockUser clears both an administrator's lock and an automatic lockout,
// on behalf of actor, who must hold everything the user holds
// (*EscalationError otherwise).
func (s *Service) UnlockUser(ctx context.Context, actor *Principal, id uuid.UUID) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := authorizeOver(ctx, tx, actor, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE users SET locked = false, locked_until = NULL, failed_logins = 0, updated_at = $2 WHERE id = $1`, id, s.now())
		return err
	})
	return wrap("auth: unlock user", err)
}

// SetUserRoles replaces a user's roles (by name) on behalf of actor. Nobody
// changes their own roles (ErrSelfModification), the roles of a user
// holding more than they do, or grants roles whose effective permissions
// they do not all hold (*EscalationError); the last administrator cannot be
// demoted (ErrLastAdmin).
func (s *Service) SetUserRoles(ctx context.Context, actor *Principal, id uuid.UUID, roles []string) (*User, error) {
	if err := notSelf(actor, id, ErrSelfModification); err != nil {
		return nil, err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := authorizeOver(ctx, tx, actor, id); err != nil {
			return err
		}
		if err := setUserRoles(ctx, tx, id, roles); err != nil {
			return err
		}
		if err := checkUserGrant(ctx, tx, actor, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET updated_at = $2 WHERE id = $1`, id, s.now()); err != nil {
			return err
		}
		return ensureAnyAdmin(ctx, tx)
	})
	if err != nil {
		return nil, wrap("auth: set user roles", err)
	}
	return s.GetUser(ctx, id)
}

// SetUserScope replaces a user's data scope on behalf of actor. Nobody
// changes their own scope (ErrSelfModification), the scope of a user
// holding more than they do, or grants a scope beyond their own
// (*EscalationError; an empty scope is unrestricted, so only an
// unrestricted actor may grant it).
func (s *Service) SetUserScope(ctx context.Context, actor *Principal, id uuid.UUID, sc Scope) (*User, error) {
	if err := notSelf(actor, id, ErrSelfModification); err != nil {
		return nil, err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := authorizeOver(ctx, tx, actor, id); err != nil {
			return err
		}
		if err := CheckGrant(actor, nil, &sc); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE users SET scope_sites = $2, scope_vm_groups = $3, updated_at = $4 WHERE id = $1`,
			id, nonNil(sortedUnique(sc.Sites)), nonNil(sortedUnique(sc.VMGroups)), s.now())
		return err
	})
	if err != nil {
		return nil, wrap("auth: set user scope", err)
	}
	return s.GetUser(ctx, id)
}

// UserPermissions returns a user's effective permissions, sorted.
func (s *Service) UserPermissions(ctx context.Context, id uuid.UUID) ([]string, error) {
	var perms []string
	err := s.pool.QueryRow(ctx, `SELECT ARRAY(`+effectivePermissionsSQL("$1")+`) FROM users WHERE id = $1`, id).Scan(&perms)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("auth: user permissions: %w", err)
	}
	return perms, nil
}

func setUserRoles(ctx context.Context, tx pgx.Tx, id uuid.UUID, roles []string) error {
	roles = sortedUnique(roles)
	ids, err := roleIDs(ctx, tx, "roles", roles)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM user_roles WHERE user_id = $1`, id); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO user_roles (user_id, role_id) SELECT $1, unnest($2::uuid[])`, id, ids)
	return err
}

// roleIDs resolves role names, failing with UnknownError on the first
// unknown one.
func roleIDs(ctx context.Context, tx pgx.Tx, field string, names []string) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, 0, len(names))
	for _, n := range names {
		var id uuid.UUID
		err := tx.QueryRow(ctx, `SELECT id FROM roles WHERE name = $1`, n).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, &UnknownError{Field: field, Name: n}
		}
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// canAdministerSQL is true for the user u whose effective permissions
// include both user:write and role:write.
const canAdministerSQL = `(WITH RECURSIVE rr(id) AS (SELECT role_id FROM user_roles WHERE user_id = u.id
		UNION SELECT rp.parent_id FROM role_parents rp JOIN rr ON rp.role_id = rr.id)
	SELECT count(DISTINCT permission) FROM role_permissions WHERE role_id IN (SELECT id FROM rr)
		AND permission IN ('user:write', 'role:write')) = 2`

// ensureOtherAdmin fails with ErrLastAdmin if removing user id would leave
// nobody able to administer users and roles. It only matters when id is an
// administrator itself; a database with no administrator at all is left to
// `user create-admin`.
func ensureOtherAdmin(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.auth.admins'))`); err != nil {
		return err
	}
	var self, others bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users u WHERE u.id = $1 AND NOT u.locked AND `+canAdministerSQL+`),
		EXISTS (SELECT 1 FROM users u WHERE u.id <> $1 AND NOT u.locked AND `+canAdministerSQL+`)`, id).Scan(&self, &others); err != nil {
		return err
	}
	if self && !others {
		return ErrLastAdmin
	}
	return nil
}

// ensureAnyAdmin fails with ErrLastAdmin if no unlocked administrator is
// left after a change in the current transaction.
func ensureAnyAdmin(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.auth.admins'))`); err != nil {
		return err
	}
	var found bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users u WHERE NOT u.locked AND `+canAdministerSQL+`)`).Scan(&found); err != nil {
		return err
	}
	if !found {
		return ErrLastAdmin
	}
	return nil
}

func userConflict(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		if strings.Contains(pgErr.ConstraintName, "email") {
			return &ConflictError{Field: "email"}
		}
		return &ConflictError{Field: "username"}
	}
	return err
}

// wrap adds origin to unexpected errors and leaves the package's own error
// values bare so callers can match them with errors.Is and errors.As.
func wrap(origin string, err error) error {
	if err == nil {
		return nil
	}
	var (
		conflict *ConflictError
		unknown  *UnknownError
		policy   *PolicyError
	)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLastAdmin) || errors.Is(err, ErrBuiltinRole) || errors.Is(err, ErrRoleCycle) ||
		errors.Is(err, ErrSelf) || errors.Is(err, ErrSelfModification) || errors.Is(err, ErrEscalation) ||
		errors.As(err, &conflict) || errors.As(err, &unknown) || errors.As(err, &policy) {
		return err
	}
	return fmt.Errorf("%s: %w", origin, err)
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func orderBy(keys []SortKey, allowed map[string]string, def string) string {
	var terms []string
	for _, k := range keys {
		col, ok := allowed[k.Field]
		if !ok {
			continue
		}
		if k.Desc {
			col += " DESC NULLS LAST"
		}
		terms = append(terms, col)
	}
	if len(terms) == 0 {
		return def
	}
	return strings.Join(terms, ", ")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
