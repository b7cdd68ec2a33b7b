package sqlite

import "github.com/aldis-im/aldis/core/store/internal/sqlstore"

// migrations is the schema history. Released steps are never edited, only
// appended to, because databases in the field have already applied them.
// The DDL is SQLite's own (STRICT tables, AUTOINCREMENT); the queries that
// use it are shared with other engines, so a PostgreSQL schema must keep the
// same table and column names.
func migrations() []sqlstore.Migration {
	return []sqlstore.Migration{
		{
			Name: "initial schema",
			Stmts: []string{
				`CREATE TABLE accounts (
					jid               TEXT    NOT NULL PRIMARY KEY,
					domain            TEXT    NOT NULL,
					sha1_salt         BLOB,
					sha1_iterations   INTEGER NOT NULL,
					sha1_stored_key   BLOB,
					sha1_server_key   BLOB,
					sha256_salt       BLOB,
					sha256_iterations INTEGER NOT NULL,
					sha256_stored_key BLOB,
					sha256_server_key BLOB,
					created           INTEGER NOT NULL -- Unix microseconds
				) STRICT, WITHOUT ROWID`,
				`CREATE INDEX accounts_domain ON accounts (domain)`,

				`CREATE TABLE roster_versions (
					user_jid TEXT    NOT NULL PRIMARY KEY,
					ver      INTEGER NOT NULL
				) STRICT, WITHOUT ROWID`,
				`CREATE TABLE roster_items (
					user_jid     TEXT    NOT NULL,
					contact      TEXT    NOT NULL,
					name         TEXT    NOT NULL,
					subscription TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
					ask          INTEGER NOT NULL,
					approved     INTEGER NOT NULL,
					group_names  TEXT    NOT NULL, -- JSON array of strings
					PRIMARY KEY (user_jid, contact)
				) STRICT, WITHOUT ROWID`,

				// The id gives arrival order; a replaced request keeps its place.
				`CREATE TABLE sub_requests (
					id       INTEGER PRIMARY KEY AUTOINCREMENT,
					user_jid TEXT    NOT NULL,
					contact  TEXT    NOT NULL,
					stanza   TEXT    NOT NULL,
					UNIQUE (user_jid, contact)
				) STRICT`,

				// AUTOINCREMENT so ids are never reused: a client holding the id
				// of a delivered message (XEP-0013) must not delete a newer one.
				`CREATE TABLE offline (
					id       INTEGER PRIMARY KEY AUTOINCREMENT,
					user_jid TEXT    NOT NULL,
					stanza   TEXT    NOT NULL,
					stored   INTEGER NOT NULL -- Unix microseconds
				) STRICT`,
				`CREATE INDEX offline_user ON offline (user_jid, id)`,

				`CREATE TABLE xml_blobs (
					user_jid TEXT NOT NULL,
					name     TEXT NOT NULL,
					xml      TEXT NOT NULL,
					PRIMARY KEY (user_jid, name)
				) STRICT, WITHOUT ROWID`,

				`CREATE TABLE blocklist (
					user_jid TEXT NOT NULL,
					jid      TEXT NOT NULL,
					PRIMARY KEY (user_jid, jid)
				) STRICT, WITHOUT ROWID`,
			},
		},
		{
			Name: "multi-user chat rooms",
			Stmts: []string{
				`CREATE TABLE muc_rooms (
					jid     TEXT NOT NULL PRIMARY KEY,
					domain  TEXT NOT NULL,
					config  TEXT NOT NULL,
					subject TEXT NOT NULL
				) STRICT, WITHOUT ROWID`,
				`CREATE INDEX muc_rooms_domain ON muc_rooms (domain)`,
				`CREATE TABLE muc_affiliations (
					room_jid    TEXT NOT NULL REFERENCES muc_rooms (jid) ON DELETE CASCADE,
					jid         TEXT NOT NULL,
					affiliation TEXT NOT NULL CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
					reason      TEXT NOT NULL,
					PRIMARY KEY (room_jid, jid)
				) STRICT, WITHOUT ROWID`,
			},
		},
		{
			Name: "message archive",
			Stmts: []string{
				// id is ASCII text that sorts in archive order, so paging is a
				// range scan on the primary key (PostgreSQL: COLLATE "C").
				`CREATE TABLE archive (
					user_jid TEXT    NOT NULL,
					id       TEXT    NOT NULL,
					with_jid TEXT    NOT NULL,
					stored   INTEGER NOT NULL, -- Unix microseconds
					stanza   TEXT    NOT NULL,
					PRIMARY KEY (user_jid, id)
				) STRICT`, // not WITHOUT ROWID: stanzas make rows too big for it
				`CREATE INDEX archive_with ON archive (user_jid, with_jid, id)`,
				`CREATE INDEX archive_stored ON archive (stored)`,
			},
		},
		{
			Name: "clearances",
			Stmts: []string{
				// user_jid holds any principal: a user's bare JID is purged
				// with the account like the other per-user tables.
				`CREATE TABLE clearances (
					user_jid TEXT NOT NULL PRIMARY KEY,
					expr     TEXT NOT NULL
				) STRICT, WITHOUT ROWID`,
			},
		},
		{
			Name: "store-and-forward queue",
			Stmts: []string{
				// One row per item of every queue (core/queue). A finished item
				// stays as a tombstone (done > 0, payload emptied) so that its
				// idempotency key keeps refusing duplicates until pruned. key
				// is NULL when the item has none: NULLs never clash in a
				// UNIQUE index, in SQLite and PostgreSQL alike.
				`CREATE TABLE queue_items (
					id         INTEGER PRIMARY KEY AUTOINCREMENT,
					queue      TEXT    NOT NULL,
					key        TEXT,
					dest       TEXT    NOT NULL,
					priority   INTEGER NOT NULL,
					meta       TEXT    NOT NULL, -- JSON object of strings
					payload    BLOB    NOT NULL,
					attempts   INTEGER NOT NULL,
					created    INTEGER NOT NULL, -- Unix microseconds
					due        INTEGER NOT NULL, -- Unix microseconds
					expires    INTEGER NOT NULL, -- Unix microseconds; 0: never
					lease      TEXT    NOT NULL,
					last_error TEXT    NOT NULL,
					done       INTEGER NOT NULL  -- Unix microseconds; 0: live
				) STRICT`,
				`CREATE UNIQUE INDEX queue_items_key ON queue_items (queue, key)`,
				// The next due time, and pruning of tombstones.
				`CREATE INDEX queue_items_due ON queue_items (queue, done, due)`,
				// Delivery order: a scan in index order stops at the LIMIT,
				// and covers the due query (no row lookups).
				`CREATE INDEX queue_items_order ON queue_items (queue, done, priority DESC, due, id, dest)`,
			},
		},
	}
}
