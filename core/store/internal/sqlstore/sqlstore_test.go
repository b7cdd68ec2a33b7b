package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

// TestLockUser checks that the dialect's per-user lock runs, with the user,
// inside the StoreOffline transaction (SQLite itself needs none).
func TestLockUser(t *testing.T) {
	db := memDB(t)
	d := Dialect{
		Name: "test",
		Migrations: []Migration{{Name: "minimal", Stmts: []string{
			`CREATE TABLE accounts (jid TEXT, domain TEXT, sha1_salt BLOB, sha1_iterations INTEGER, sha1_stored_key BLOB,
				sha1_server_key BLOB, sha256_salt BLOB, sha256_iterations INTEGER, sha256_stored_key BLOB,
				sha256_server_key BLOB, created INTEGER)`,
			`CREATE TABLE roster_versions (user_jid TEXT, ver INTEGER)`,
			`CREATE TABLE roster_items (user_jid TEXT, contact TEXT, name TEXT, subscription TEXT, ask INTEGER,
				approved INTEGER, group_names TEXT)`,
			`CREATE TABLE offline (id INTEGER PRIMARY KEY AUTOINCREMENT, user_jid TEXT, stanza TEXT, stored INTEGER)`,
			`CREATE TABLE locks (user_jid TEXT)`,
		}}},
		LockUser: `INSERT INTO locks (user_jid) VALUES ($1)`,
	}
	s, err := New(t.Context(), db, db, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.StoreOffline(t.Context(), "alice@example.org", "<message/>", 10); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := db.QueryRowContext(t.Context(), `SELECT user_jid FROM locks`).Scan(&got); err != nil || got != "alice@example.org" {
		t.Errorf("lock ran with %q, %v; want alice@example.org", got, err)
	}
}

// TestWriteDurable: a durable write runs with the dialect's durable
// setting (SQLite: synchronous FULL) and leaves the connection relaxed
// again (NORMAL) for the other writes, whether it commits or fails.
func TestWriteDurable(t *testing.T) {
	db := memDB(t)
	// Only the pools and the dialect's settings: writeDurable needs no more.
	s := &Store{name: "test", r: db, w: db, durable: [2]string{"PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL"}}
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE t (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	sync := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		var v int
		if err := q.QueryRowContext(t.Context(), `PRAGMA synchronous`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if _, err := db.ExecContext(t.Context(), `PRAGMA synchronous=NORMAL`); err != nil {
		t.Fatal(err)
	}
	for _, fail := range []bool{false, true} {
		var during int
		err := s.writeDurable(t.Context(), func(tx *sql.Tx) error {
			during = sync(tx)
			if _, err := tx.ExecContext(t.Context(), `INSERT INTO t VALUES (1)`); err != nil {
				return err
			}
			if fail {
				return errors.New("no")
			}
			return nil
		})
		if (err != nil) != fail {
			t.Fatalf("fail %v: %v", fail, err)
		}
		if during != 2 || sync(db) != 1 {
			t.Errorf("fail %v: synchronous %d during, %d after; want 2 (FULL), 1 (NORMAL)", fail, during, sync(db))
		}
	}
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d rows, %v; want the committed one only", n, err)
	}
}
