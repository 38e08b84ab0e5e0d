package auth

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the service. The REST API maps each to a stable code.
var (
	// ErrInvalidCredentials covers an unknown user, a wrong password and a
	// locked account alike, so a login response never reveals which.
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrUnauthenticated means a bearer token is missing, malformed, forged,
	// expired, or belongs to a session that has ended.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrRefreshInvalid means a refresh token is unknown or expired.
	ErrRefreshInvalid = errors.New("auth: invalid refresh token")
	// ErrRefreshReused means an already exchanged refresh token was presented
	// again; its whole session has been revoked.
	ErrRefreshReused = errors.New("auth: refresh token reused; session revoked")
	// ErrWrongPassword means the current password given to a password change
	// is wrong.
	ErrWrongPassword = errors.New("auth: current password is wrong")
	// ErrNotFound means the addressed user, role, session or token does not
	// exist (or is not the caller's).
	ErrNotFound = errors.New("auth: not found")
	// ErrBuiltinRole means a built-in role cannot be changed or deleted.
	ErrBuiltinRole = errors.New("auth: built-in roles cannot be changed")
	// ErrRoleCycle means a role would inherit from itself.
	ErrRoleCycle = errors.New("auth: role inheritance would form a cycle")
	// ErrLastAdmin means the change would leave no unlocked administrator.
	ErrLastAdmin = errors.New("auth: the last administrator cannot be removed, locked or demoted")
	// ErrSelf means an administrator tried to delete or lock themselves.
	ErrSelf = errors.New("auth: this operation cannot be applied to yourself")
)

// ConflictError means a unique name is taken.
type ConflictError struct {
	Field string // "username", "email", "name"
}

func (e *ConflictError) Error() string { return fmt.Sprintf("auth: %s already in use", e.Field) }

// UnknownError means a request names a role or permission that does not exist.
type UnknownError struct {
	Field string // "roles", "parents", "permissions"
	Name  string
}

func (e *UnknownError) Error() string { return fmt.Sprintf("auth: unknown %s %q", e.Field, e.Name) }

// RateLimitError means too many login attempts came from one address.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("auth: too many login attempts; retry after %s", e.RetryAfter)
}
