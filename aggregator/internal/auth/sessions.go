package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Session is an open session as the online-users list shows it.
type Session struct {
	ID         uuid.UUID `json:"id"`
	UserID     uuid.UUID `json:"user_id"`
	Username   string    `json:"username"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
}

// ListSessionsQuery filters the online-users list.
type ListSessionsQuery struct {
	User     string // username, exact
	Page     int
	PageSize int
}

// ListSessions returns the sessions that are open (not revoked, not
// expired), most recently active first, and their total.
func (s *Service) ListSessions(ctx context.Context, q ListSessionsQuery) ([]Session, int, error) {
	now := s.now()
	cond := `s.revoked_at IS NULL AND s.expires_at > $1 AND ($2 = '' OR lower(u.username) = lower($2))`
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE `+cond, now, q.User).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("auth: list sessions: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT s.id, s.user_id, u.username, s.created_at, s.last_seen_at, s.expires_at, s.ip, s.user_agent
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE `+cond+` ORDER BY s.last_seen_at DESC, s.id LIMIT $3 OFFSET $4`,
		now, q.User, q.PageSize, (q.Page-1)*q.PageSize)
	if err != nil {
		return nil, 0, fmt.Errorf("auth: list sessions: %w", err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		var x Session
		if err := rows.Scan(&x.ID, &x.UserID, &x.Username, &x.CreatedAt, &x.LastSeenAt, &x.ExpiresAt, &x.IP, &x.UserAgent); err != nil {
			return nil, 0, fmt.Errorf("auth: list sessions: %w", err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("auth: list sessions: %w", err)
	}
	return out, total, nil
}

// ForceLogout ends session id on behalf of actor (DELETE /sessions/{id}).
// Ending another user's session is acting on that user: refused with an
// *EscalationError when the session's user holds more than actor (so a
// session admin cannot keep logging an administrator out). A missing or
// already ended session is ErrNotFound.
func (s *Service) ForceLogout(ctx context.Context, actor *Principal, id uuid.UUID) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("auth: force logout: %w", err)
	}
	defer tx.Rollback(ctx)
	var owner uuid.UUID
	err = tx.QueryRow(ctx, `SELECT user_id FROM sessions WHERE id = $1 AND revoked_at IS NULL FOR UPDATE`, id).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("auth: force logout: %w", err)
	}
	if actor == nil || actor.UserID != owner {
		if err := authorizeOver(ctx, tx, actor, owner); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoke_reason = 'forced_logout' WHERE id = $1`, id, s.now()); err != nil {
		return fmt.Errorf("auth: force logout: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("auth: force logout: %w", err)
	}
	return nil
}
