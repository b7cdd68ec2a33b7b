// Package sqlite implements store.Store on an embedded SQLite database file.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/core/store/internal/sqlstore"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrSchemaTooNew is returned by Open for a database written by a newer
// binary, whose schema this one does not know.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// readConns bounds the read pool; reads are short, so a few connections
// saturate the two to four cores a typical deployment has.
const readConns = 4

// DB is a store.Store backed by SQLite; its methods are those of the SQL
// implementation shared with other engines.
type DB struct {
	*sqlstore.Store
}

var _ store.Store = (*DB)(nil)

func dialect() sqlstore.Dialect {
	return sqlstore.Dialect{Name: "sqlite", Migrations: migrations(),
		Durable: "PRAGMA synchronous=FULL", Relaxed: "PRAGMA synchronous=NORMAL"}
}

// Open opens or creates the database at path, creating missing parent
// directories (mode 0700) and the file (mode 0600), and migrates its schema.
// It refuses, with ErrSchemaTooNew, a database from a newer binary.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. A
// committed transaction survives the process being killed, since it is in
// the WAL (handed to the OS) before Commit returns; a power loss or OS crash
// may roll back the transactions committed since the WAL was last synced
// (at checkpoints), but never corrupts the database. That costs far less
// than an fsync per commit, and losing the last moments of roster edits or
// offline messages on power loss is the accepted trade for a chat server.
// Queue inserts are the exception: they commit with synchronous=FULL (an
// fsync of the WAL), since a queued mail was answered 250 and must
// survive a power loss too.
//
// Several processes may open the same file (the server and the aldis CLI):
// each DB has one write connection, whose transactions start with BEGIN
// IMMEDIATE so they queue on busy_timeout (5 s) instead of failing, and a
// small pool of read-only connections that WAL lets run beside the writer.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	// Created here rather than by SQLite so the mode is ours; SQLite gives
	// the -wal and -shm files the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}

	w, err := openPool(ctx, fileDSN(abs, url.Values{
		"_pragma": {"busy_timeout(5000)", "foreign_keys(1)", "journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-32768)"},
		// Deferred transactions that read and then write can fail with
		// SQLITE_BUSY at once, without waiting, when another process wrote
		// in between; IMMEDIATE takes the write lock up front and waits.
		"_txlock": {"immediate"},
	}), 1)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	// journal_mode silently keeps the old mode where WAL is impossible
	// (e.g. some network filesystems); the locking above depends on WAL.
	var mode string
	if err := w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: read journal mode: %w", abs, err)
	}
	if !strings.EqualFold(mode, "wal") {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: journal mode is %q, want wal (is the filesystem local?)", abs, mode)
	}
	r, err := openPool(ctx, fileDSN(abs, url.Values{
		"_pragma": {"busy_timeout(5000)", "foreign_keys(1)", "query_only(1)"},
	}), readConns)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s, err := sqlstore.New(ctx, r, w, dialect())
	if err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	return &DB{s}, nil
}

// OpenMemory opens a private in-memory database, for tests. It uses a single
// connection for reads and writes, because each connection to ":memory:" is a
// database of its own.
func OpenMemory(ctx context.Context) (*DB, error) {
	db, err := openPool(ctx, ":memory:?_pragma=foreign_keys(1)", 1)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open memory: %w", err)
	}
	s, err := sqlstore.New(ctx, db, db, dialect())
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open memory: %w", err)
	}
	return &DB{s}, nil
}

// fileDSN builds a URI filename, escaping the path so that '?', '#' or '%'
// in it are not read as URI syntax.
func fileDSN(abs string, params url.Values) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // Windows drive paths
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: params.Encode()}
	return u.String()
}

// openPool opens a pool of at most conns connections that are never closed
// while idle, so prepared statements stay prepared (and ":memory:" survives).
func openPool(ctx context.Context, dsn string, conns int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}
