package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vmpulse/vmpulse/protocol"
)

// RejectError means a batch can never be stored as sent: retrying it is
// pointless. Code is the protocol error code to answer with.
type RejectError struct {
	Code protocol.ErrorCode
	Msg  string
}

func (e *RejectError) Error() string { return "store: rejected: " + e.Msg }

func reject(code protocol.ErrorCode, format string, args ...any) error {
	return &RejectError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// IsTransient reports whether err is worth retrying unchanged: the database
// is unreachable, restarting, overloaded, or a serialization conflict. Data
// errors (bad values, constraint violations other than the duplicate key the
// write paths handle themselves) are not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var rej *RejectError
	if errors.As(err, &rej) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources (disk full, out of memory, too many connections)
			"57", // operator intervention (admin shutdown, crash shutdown, cannot connect now)
			"58", // system error (I/O)
			"40": // transaction rollback (serialization failure, deadlock)
			return true
		case "55": // object not in prerequisite state, incl. lock_not_available
			return pgErr.Code == "55P03"
		}
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	// Connection-level failures from pgx (connect refused, closed conn,
	// unexpected EOF) carry no SQLSTATE: treat them as transient.
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	return isConnClosed(err)
}

func isConnClosed(err error) bool {
	msg := err.Error()
	for _, s := range []string{"conn closed", "connection reset", "unexpected EOF", "broken pipe", "failed to deallocate", "closed pool"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// asReject turns errors in which PostgreSQL refuses the data itself (a NUL
// in a string, a value out of range, a row no partition accepts after a
// retry) into a *RejectError, so the batch is rejected instead of retried
// forever. Other errors pass through unchanged.
func asReject(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code[:2] {
	case "22", // data exception
		"54": // program limit exceeded (row or array too large)
		return reject(protocol.ErrCodeMalformed, "database refused the batch: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	case "23": // integrity constraint violation
		if pgErr.Code != "23505" {
			return reject(protocol.ErrCodeMalformed, "database refused the batch: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
		}
	}
	return err
}

// isNoPartition reports PostgreSQL refusing a row no partition accepts.
func isNoPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.Contains(pgErr.Message, "no partition")
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
