package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// LockRollups takes, until tx ends, the advisory lock under which the
// rollup job, rollup retention and the hourly tier's packer write the
// rollup tables (waiting for a run in progress): while tx holds it they
// skip their run or wait, so tx may rewrite rollup rows with no table
// lock and no other writer. A restore replaces the rollup rows of its
// range under it while ingest goes on.
func LockRollups(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, rollupLock); err != nil {
		return fmt.Errorf("store: lock rollups: %w", err)
	}
	return nil
}
