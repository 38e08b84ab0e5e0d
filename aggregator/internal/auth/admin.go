package auth

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CreateAdmin creates a user holding the built-in admin role, for the first
// login after installation (`vmpulse-aggregator user create-admin`). It
// syncs the built-in roles first, so it works on a freshly migrated
// database. The password must pass CheckPassword; the username or email
// must not be taken (*ConflictError). It acts as the installation itself,
// with no actor to check: it is for the command line, never for a request.
func CreateAdmin(ctx context.Context, pool *pgxpool.Pool, username, email, password string) error {
	if err := SyncBuiltins(ctx, pool); err != nil {
		return err
	}
	if _, err := createUser(ctx, pool, UserInput{Username: username, Email: email, DisplayName: username}, password, []string{RoleAdmin}, Scope{}, nil); err != nil {
		return fmt.Errorf("auth: create admin: %w", err)
	}
	return nil
}

// CreateAdminGenerated is CreateAdmin with a random password, which it
// returns so the installer can show it once.
func CreateAdminGenerated(ctx context.Context, pool *pgxpool.Pool, username, email string) (string, error) {
	password, err := GeneratePassword(username, email)
	if err != nil {
		return "", err
	}
	if err := CreateAdmin(ctx, pool, username, email, password); err != nil {
		return "", err
	}
	return password, nil
}
