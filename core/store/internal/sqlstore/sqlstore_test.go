package sqlstore

import (
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
