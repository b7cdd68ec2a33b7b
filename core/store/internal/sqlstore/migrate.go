package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrSchemaTooNew means the database was migrated by a newer binary; opening
// it anyway could corrupt data the newer schema relies on.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// Migration is one schema step. Step i (0-based) brings the schema to
// version i+1; steps are never edited once released, only appended.
type Migration struct {
	Name  string
	Stmts []string
}

// Migrate brings db to the latest version in steps, applying all pending
// steps in one transaction so a failure leaves the schema untouched. It
// returns the resulting version.
func Migrate(ctx context.Context, db *sql.DB, steps []Migration) (version int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER NOT NULL PRIMARY KEY,
		applied BIGINT NOT NULL
	)`); err != nil {
		return 0, fmt.Errorf("migrate: create schema_version: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("migrate: read version: %w", err)
	}
	if cur > len(steps) {
		return 0, fmt.Errorf("migrate: %w (database at version %d, binary knows up to %d): run a newer aldis",
			ErrSchemaTooNew, cur, len(steps))
	}
	now := time.Now().UnixMicro()
	for i := cur; i < len(steps); i++ {
		for _, q := range steps[i].Stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return 0, fmt.Errorf("migrate: step %d (%s): %w", i+1, steps[i].Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied) VALUES ($1, $2)`, i+1, now); err != nil {
			return 0, fmt.Errorf("migrate: record version %d: %w", i+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate: commit: %w", err)
	}
	return len(steps), nil
}
