// Package sqlstore implements store.Store over database/sql with SQL that every supported engine accepts.
package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

// Dialect is what differs between SQL engines, the one place for it.
//
// The queries in this package use $N placeholders and only syntax that both
// SQLite and PostgreSQL accept (ON CONFLICT, RETURNING); ordering by text is
// done in Go, since collations differ. The engine-specific parts (DDL,
// connection setup, locking) come from the backend, so a new backend supplies
// a Dialect and its pools and reuses everything here.
type Dialect struct {
	// Name prefixes error messages ("sqlite").
	Name string
	// Migrations is the engine's schema history, see Migrate.
	Migrations []Migration
	// LockUser, if set, runs with the user as $1 at the start of write
	// transactions that check a limit before writing (the offline quota), to
	// serialise them per user. SQLite leaves it empty because its write
	// transactions already exclude each other; PostgreSQL needs e.g.
	// "SELECT pg_advisory_xact_lock(hashtext($1))".
	LockUser string
	// Durable and Relaxed, if set, are run on the write connection before
	// and after a transaction that must survive a power loss, not only a
	// crash (queue inserts: mail answered 250). SQLite: synchronous FULL
	// then back to NORMAL, so that only those commits wait for an fsync.
	Durable, Relaxed string
}

// Store implements store.Store. Reads go to the read pool and writes to the
// write pool; a backend may pass the same pool twice.
type Store struct {
	name     string
	r, w     *sql.DB
	lockUser string
	durable  [2]string // Dialect.Durable, Dialect.Relaxed

	// Prepared statements for the hot paths.
	getAccount    *sql.Stmt // read pool
	rosterVersion *sql.Stmt // read pool
	rosterItems   *sql.Stmt // read pool
	countOffline  *sql.Stmt // write pool: the quota check runs inside the write transaction
	insertOffline *sql.Stmt // write pool
}

var _ store.Store = (*Store)(nil)

const (
	accountColumns = `jid, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
		sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created`
	rosterColumns = `contact, name, subscription, ask, approved, group_names`
)

// New migrates the schema on the write pool and prepares the hot statements.
// On success the Store owns both pools; on failure the caller still does.
// Its errors are not prefixed with the dialect name: the backend's Open adds
// that with the rest of its context.
func New(ctx context.Context, read, write *sql.DB, d Dialect) (*Store, error) {
	if _, err := Migrate(ctx, write, d.Migrations); err != nil {
		return nil, err
	}
	s := &Store{name: d.Name, r: read, w: write, lockUser: d.LockUser, durable: [2]string{d.Durable, d.Relaxed}}
	stmts := []struct {
		dst **sql.Stmt
		db  *sql.DB
		q   string
	}{
		{&s.getAccount, read, `SELECT ` + accountColumns + ` FROM accounts WHERE jid = $1`},
		{&s.rosterVersion, read, `SELECT ver FROM roster_versions WHERE user_jid = $1`},
		{&s.rosterItems, read, `SELECT ` + rosterColumns + ` FROM roster_items WHERE user_jid = $1`},
		// No "LIMIT $2" to bound the count by the quota: SQLite re-prepares a
		// statement on every execution once a LIMIT is a bound parameter
		// (3x slower), and the backlog is bounded by the quota anyway.
		{&s.countOffline, write, `SELECT COUNT(*) FROM offline WHERE user_jid = $1`},
		{&s.insertOffline, write, `INSERT INTO offline (user_jid, stanza, stored) VALUES ($1, $2, $3) RETURNING id`},
	}
	for _, st := range stmts {
		p, err := st.db.PrepareContext(ctx, st.q)
		if err != nil {
			_ = s.closeStmts()
			return nil, fmt.Errorf("prepare %q: %w", st.q, err)
		}
		*st.dst = p
	}
	return s, nil
}

func (s *Store) closeStmts() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.getAccount, s.rosterVersion, s.rosterItems, s.countOffline, s.insertOffline} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// Close closes the statements and both pools.
func (s *Store) Close() error {
	errs := []error{s.closeStmts(), s.w.Close()}
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: close: %w", s.name, err)
	}
	return nil
}

// fail wraps err with the operation and the key it was about.
func (s *Store) fail(op, key string, err error) error {
	return fmt.Errorf("%s: %s %q: %w", s.name, op, key, err)
}

// write runs fn in a transaction on the write pool.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// writeDurable is write for a transaction that must survive a power loss:
// it holds a write connection made durable (Dialect.Durable) for it.
func (s *Store) writeDurable(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	if s.durable[0] == "" {
		return s.write(ctx, fn)
	}
	c, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, s.durable[0]); err != nil {
		return fmt.Errorf("begin durable: %w", err)
	}
	defer func() {
		// Even when ctx ended: a connection left durable is only slower.
		if _, rerr := c.ExecContext(context.WithoutCancel(ctx), s.durable[1]); rerr != nil && err == nil {
			err = fmt.Errorf("end durable: %w", rerr)
		}
	}()
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func checkKey(what, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s", what)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// domainOf returns the domainpart of a bare JID.
func domainOf(jid string) string {
	if _, d, ok := strings.Cut(jid, "@"); ok {
		return d
	}
	return jid
}

// --- accounts ---

// CreateAccount implements store.Store.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	const op = "create account"
	if err := checkKey("jid", a.JID); err != nil {
		return s.fail(op, a.JID, err)
	}
	created := a.Created
	if created.IsZero() {
		created = time.Now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO accounts (domain, `+accountColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (jid) DO NOTHING`,
			domainOf(a.JID), a.JID,
			a.SHA1.Salt, a.SHA1.Iterations, a.SHA1.StoredKey, a.SHA1.ServerKey,
			a.SHA256.Salt, a.SHA256.Iterations, a.SHA256.StoredKey, a.SHA256.ServerKey,
			created.UnixMicro())
		if err := affected(res, err, store.ErrExists); err != nil {
			return err
		}
		// Rows written for this JID while it had no account (a race with
		// DeleteAccount, say) must not leak into the new account.
		return purgeUser(ctx, tx, a.JID)
	})
	if err != nil {
		return s.fail(op, a.JID, err)
	}
	return nil
}

// purgeUser deletes the user's rows from every per-user table; a new
// per-user table must be listed here so DeleteAccount removes it too.
func purgeUser(ctx context.Context, tx *sql.Tx, user string) error {
	for _, t := range [...]string{"roster_items", "roster_versions", "sub_requests", "offline", "xml_blobs", "blocklist", "archive", "clearances"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE user_jid = $1`, user); err != nil {
			return fmt.Errorf("clear %s: %w", t, err)
		}
	}
	return nil
}

// GetAccount implements store.Store.
func (s *Store) GetAccount(ctx context.Context, jid string) (store.Account, error) {
	var (
		a       store.Account
		created int64
	)
	err := s.getAccount.QueryRowContext(ctx, jid).Scan(&a.JID,
		&a.SHA1.Salt, &a.SHA1.Iterations, &a.SHA1.StoredKey, &a.SHA1.ServerKey,
		&a.SHA256.Salt, &a.SHA256.Iterations, &a.SHA256.StoredKey, &a.SHA256.ServerKey,
		&created)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Account{}, s.fail("get account", jid, err)
	}
	a.Created = time.UnixMicro(created).UTC()
	return a, nil
}

// SetCredentials implements store.Store.
func (s *Store) SetCredentials(ctx context.Context, jid string, sha1, sha256 store.ScramKeys) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET
			sha1_salt = $2, sha1_iterations = $3, sha1_stored_key = $4, sha1_server_key = $5,
			sha256_salt = $6, sha256_iterations = $7, sha256_stored_key = $8, sha256_server_key = $9
			WHERE jid = $1`,
			jid, sha1.Salt, sha1.Iterations, sha1.StoredKey, sha1.ServerKey,
			sha256.Salt, sha256.Iterations, sha256.StoredKey, sha256.ServerKey)
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return s.fail("set credentials", jid, err)
	}
	return nil
}

// DeleteAccount implements store.Store.
func (s *Store) DeleteAccount(ctx context.Context, jid string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE jid = $1`, jid)
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		return purgeUser(ctx, tx, jid)
	})
	if err != nil {
		return s.fail("delete account", jid, err)
	}
	return nil
}

// ListAccounts implements store.Store.
func (s *Store) ListAccounts(ctx context.Context, domain string) ([]string, error) {
	jids, err := queryStrings(ctx, s.r, `SELECT jid FROM accounts WHERE domain = $1`, domain)
	if err != nil {
		return nil, s.fail("list accounts", domain, err)
	}
	return jids, nil
}

// queryStrings returns one text column, sorted in Go because ORDER BY
// follows the engine's collation, which differs between engines and locales.
func queryStrings(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	out, err := collect(rows, err, func(r *sql.Rows, v *string) error { return r.Scan(v) })
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// affected turns an Exec that changed no row into none, the store error
// the caller gives for that case (ErrNotFound, or ErrExists for an insert
// that did nothing).
func affected(res sql.Result, err error, none error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return none
	}
	return nil
}

// collect reads every row with scan and closes rows; err is the query's,
// so that a call can take QueryContext's results directly.
func collect[T any](rows *sql.Rows, err error, scan func(*sql.Rows, *T) error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// --- roster ---

func scanRosterItem(sc interface{ Scan(...any) error }) (store.RosterItem, error) {
	var (
		it     store.RosterItem
		groups string
	)
	if err := sc.Scan(&it.Contact, &it.Name, &it.Subscription, &it.Ask, &it.Approved, &groups); err != nil {
		return store.RosterItem{}, err
	}
	if err := json.Unmarshal([]byte(groups), &it.Groups); err != nil {
		return store.RosterItem{}, fmt.Errorf("decode groups of %q: %w", it.Contact, err)
	}
	if len(it.Groups) == 0 {
		it.Groups = nil
	}
	return it, nil
}

// Roster implements store.Store.
func (s *Store) Roster(ctx context.Context, user string) ([]store.RosterItem, int64, error) {
	const op = "roster"
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, s.fail(op, user, err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to undo
	// The version is read before the items: should an engine not give both
	// reads one snapshot, the items are then at least as new as the
	// version, and a client caching them re-fetches rather than misses a change.
	ver, err := scanVersion(tx.StmtContext(ctx, s.rosterVersion).QueryRowContext(ctx, user))
	if err != nil {
		return nil, 0, s.fail(op, user, err)
	}
	rows, err := tx.StmtContext(ctx, s.rosterItems).QueryContext(ctx, user)
	items, err := collect(rows, err, func(r *sql.Rows, it *store.RosterItem) (err error) {
		*it, err = scanRosterItem(r)
		return err
	})
	if err != nil {
		return nil, 0, s.fail(op, user, err)
	}
	slices.SortFunc(items, func(a, b store.RosterItem) int { return cmp.Compare(a.Contact, b.Contact) })
	return items, ver, nil
}

func scanVersion(row *sql.Row) (int64, error) {
	var ver int64
	if err := row.Scan(&ver); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return ver, nil
}

// RosterItem implements store.Store.
func (s *Store) RosterItem(ctx context.Context, user, contact string) (store.RosterItem, error) {
	it, err := scanRosterItem(s.r.QueryRowContext(ctx,
		`SELECT `+rosterColumns+` FROM roster_items WHERE user_jid = $1 AND contact = $2`, user, contact))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.RosterItem{}, s.fail("roster item", user+" "+contact, err)
	}
	return it, nil
}

// bumpRosterVersion increments the user's roster version and returns it.
func bumpRosterVersion(ctx context.Context, tx *sql.Tx, user string) (int64, error) {
	var ver int64
	err := tx.QueryRowContext(ctx, `INSERT INTO roster_versions (user_jid, ver) VALUES ($1, 1)
		ON CONFLICT (user_jid) DO UPDATE SET ver = roster_versions.ver + 1
		RETURNING ver`, user).Scan(&ver)
	if err != nil {
		return 0, fmt.Errorf("bump roster version: %w", err)
	}
	return ver, nil
}

// PutRosterItem implements store.Store.
func (s *Store) PutRosterItem(ctx context.Context, user string, it store.RosterItem) (int64, error) {
	const op = "put roster item"
	key := user + " " + it.Contact
	sub := it.Subscription
	switch sub {
	case "":
		sub = "none"
	case "none", "to", "from", "both":
	default:
		return 0, s.fail(op, key, fmt.Errorf("invalid subscription %q", sub))
	}
	if err := errors.Join(checkKey("user", user), checkKey("contact", it.Contact)); err != nil {
		return 0, s.fail(op, key, err)
	}
	groups := it.Groups
	if groups == nil {
		groups = []string{}
	}
	enc, err := json.Marshal(groups)
	if err != nil {
		return 0, s.fail(op, key, err)
	}
	var ver int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO roster_items (user_jid, `+rosterColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (user_jid, contact) DO UPDATE SET
				name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
				approved = excluded.approved, group_names = excluded.group_names`,
			user, it.Contact, it.Name, sub, b2i(it.Ask), b2i(it.Approved), string(enc)); err != nil {
			return err
		}
		ver, err = bumpRosterVersion(ctx, tx, user)
		return err
	})
	if err != nil {
		return 0, s.fail(op, key, err)
	}
	return ver, nil
}

// DeleteRosterItem implements store.Store.
func (s *Store) DeleteRosterItem(ctx context.Context, user, contact string) (int64, error) {
	var ver int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM roster_items WHERE user_jid = $1 AND contact = $2`, user, contact)
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		ver, err = bumpRosterVersion(ctx, tx, user)
		return err
	})
	if err != nil {
		return 0, s.fail("delete roster item", user+" "+contact, err)
	}
	return ver, nil
}

// RosterVersion implements store.Store.
func (s *Store) RosterVersion(ctx context.Context, user string) (int64, error) {
	ver, err := scanVersion(s.rosterVersion.QueryRowContext(ctx, user))
	if err != nil {
		return 0, s.fail("roster version", user, err)
	}
	return ver, nil
}

// --- subscription requests ---

// PutSubRequest implements store.Store.
func (s *Store) PutSubRequest(ctx context.Context, user string, r store.SubRequest) error {
	const op = "put subscription request"
	key := user + " " + r.Contact
	if err := errors.Join(checkKey("user", user), checkKey("contact", r.Contact)); err != nil {
		return s.fail(op, key, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// Keeps the original id, and so the position in arrival order.
		_, err := tx.ExecContext(ctx, `INSERT INTO sub_requests (user_jid, contact, stanza) VALUES ($1, $2, $3)
			ON CONFLICT (user_jid, contact) DO UPDATE SET stanza = excluded.stanza`,
			user, r.Contact, r.Stanza)
		return err
	})
	if err != nil {
		return s.fail(op, key, err)
	}
	return nil
}

// DeleteSubRequest implements store.Store.
func (s *Store) DeleteSubRequest(ctx context.Context, user, contact string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sub_requests WHERE user_jid = $1 AND contact = $2`, user, contact)
		return err
	})
	if err != nil {
		return s.fail("delete subscription request", user+" "+contact, err)
	}
	return nil
}

// SubRequests implements store.Store.
func (s *Store) SubRequests(ctx context.Context, user string) ([]store.SubRequest, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT contact, stanza FROM sub_requests WHERE user_jid = $1 ORDER BY id`, user)
	reqs, err := collect(rows, err, func(r *sql.Rows, v *store.SubRequest) error {
		return r.Scan(&v.Contact, &v.Stanza)
	})
	if err != nil {
		return nil, s.fail("subscription requests", user, err)
	}
	return reqs, nil
}

// --- offline messages ---

// StoreOffline implements store.Store.
func (s *Store) StoreOffline(ctx context.Context, user, stanza string, max int) (int64, error) {
	const op = "store offline message"
	if err := checkKey("user", user); err != nil {
		return 0, s.fail(op, user, err)
	}
	if max <= 0 {
		return 0, s.fail(op, user, store.ErrQuota)
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		if s.lockUser != "" {
			if _, err := tx.ExecContext(ctx, s.lockUser, user); err != nil {
				return fmt.Errorf("lock user: %w", err)
			}
		}
		var n int
		if err := tx.StmtContext(ctx, s.countOffline).QueryRowContext(ctx, user).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return store.ErrQuota
		}
		return tx.StmtContext(ctx, s.insertOffline).QueryRowContext(ctx, user, stanza, time.Now().UnixMicro()).Scan(&id)
	})
	if err != nil {
		return 0, s.fail(op, user, err)
	}
	return id, nil
}

// OfflineMessages implements store.Store.
func (s *Store) OfflineMessages(ctx context.Context, user string) ([]store.OfflineMessage, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, stanza, stored FROM offline WHERE user_jid = $1 ORDER BY id`, user)
	msgs, err := collect(rows, err, func(r *sql.Rows, m *store.OfflineMessage) error {
		var stored int64
		err := r.Scan(&m.ID, &m.Stanza, &stored)
		m.Stored = time.UnixMicro(stored).UTC()
		return err
	})
	if err != nil {
		return nil, s.fail("offline messages", user, err)
	}
	return msgs, nil
}

// DeleteOffline implements store.Store.
func (s *Store) DeleteOffline(ctx context.Context, user string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// One statement per id keeps the SQL fixed, so it is prepared once.
		st, err := tx.PrepareContext(ctx, `DELETE FROM offline WHERE user_jid = $1 AND id = $2`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			if _, err := st.ExecContext(ctx, user, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail("delete offline messages", user, err)
	}
	return nil
}

// CountOffline implements store.Store.
func (s *Store) CountOffline(ctx context.Context, user string) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM offline WHERE user_jid = $1`, user).Scan(&n); err != nil {
		return 0, s.fail("count offline messages", user, err)
	}
	return n, nil
}

// --- XML blobs ---

// GetXML implements store.Store.
func (s *Store) GetXML(ctx context.Context, user, key string) (string, error) {
	var x string
	err := s.r.QueryRowContext(ctx, `SELECT xml FROM xml_blobs WHERE user_jid = $1 AND name = $2`, user, key).Scan(&x)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return "", s.fail("get xml", user+" "+key, err)
	}
	return x, nil
}

// PutXML implements store.Store.
func (s *Store) PutXML(ctx context.Context, user, key, xml string) error {
	const op = "put xml"
	if err := errors.Join(checkKey("user", user), checkKey("key", key)); err != nil {
		return s.fail(op, user+" "+key, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO xml_blobs (user_jid, name, xml) VALUES ($1, $2, $3)
			ON CONFLICT (user_jid, name) DO UPDATE SET xml = excluded.xml`, user, key, xml)
		return err
	})
	if err != nil {
		return s.fail(op, user+" "+key, err)
	}
	return nil
}

// DeleteXML implements store.Store.
func (s *Store) DeleteXML(ctx context.Context, user, key string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM xml_blobs WHERE user_jid = $1 AND name = $2`, user, key)
		return err
	})
	if err != nil {
		return s.fail("delete xml", user+" "+key, err)
	}
	return nil
}

// --- clearances ---

// Clearance implements store.Store.
func (s *Store) Clearance(ctx context.Context, principal string) (string, error) {
	var expr string
	err := s.r.QueryRowContext(ctx, `SELECT expr FROM clearances WHERE user_jid = $1`, principal).Scan(&expr)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return "", s.fail("get clearance", principal, err)
	}
	return expr, nil
}

// SetClearance implements store.Store.
func (s *Store) SetClearance(ctx context.Context, principal, expr string) error {
	const op = "set clearance"
	if err := checkKey("principal", principal); err != nil {
		return s.fail(op, principal, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if expr == "" {
			_, err := tx.ExecContext(ctx, `DELETE FROM clearances WHERE user_jid = $1`, principal)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO clearances (user_jid, expr) VALUES ($1, $2)
			ON CONFLICT (user_jid) DO UPDATE SET expr = excluded.expr`, principal, expr)
		return err
	})
	if err != nil {
		return s.fail(op, principal, err)
	}
	return nil
}

// --- blocking ---

// BlockList implements store.Store.
func (s *Store) BlockList(ctx context.Context, user string) ([]string, error) {
	jids, err := queryStrings(ctx, s.r, `SELECT jid FROM blocklist WHERE user_jid = $1`, user)
	if err != nil {
		return nil, s.fail("block list", user, err)
	}
	return jids, nil
}

// Block implements store.Store.
func (s *Store) Block(ctx context.Context, user string, jids []string) error {
	const op = "block"
	if err := checkKey("user", user); err != nil {
		return s.fail(op, user, err)
	}
	for _, j := range jids {
		if err := checkKey("jid", j); err != nil {
			return s.fail(op, user, err)
		}
	}
	if len(jids) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO blocklist (user_jid, jid) VALUES ($1, $2)
			ON CONFLICT (user_jid, jid) DO NOTHING`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, j := range jids {
			if _, err := st.ExecContext(ctx, user, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail(op, user, err)
	}
	return nil
}

// Unblock implements store.Store.
func (s *Store) Unblock(ctx context.Context, user string, jids []string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if len(jids) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM blocklist WHERE user_jid = $1`, user)
			return err
		}
		st, err := tx.PrepareContext(ctx, `DELETE FROM blocklist WHERE user_jid = $1 AND jid = $2`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, j := range jids {
			if _, err := st.ExecContext(ctx, user, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail("unblock", user, err)
	}
	return nil
}

// --- multi-user chat rooms ---

// PutRoom implements store.Store.
func (s *Store) PutRoom(ctx context.Context, r store.Room) error {
	const op = "put room"
	if err := checkKey("room", r.JID); err != nil {
		return s.fail(op, r.JID, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// An upsert, not a replace: replacing the row would cascade to the
		// room's affiliations.
		_, err := tx.ExecContext(ctx, `INSERT INTO muc_rooms (jid, domain, config, subject) VALUES ($1, $2, $3, $4)
			ON CONFLICT (jid) DO UPDATE SET config = excluded.config, subject = excluded.subject`,
			r.JID, domainOf(r.JID), r.Config, r.Subject)
		return err
	})
	if err != nil {
		return s.fail(op, r.JID, err)
	}
	return nil
}

// DeleteRoom implements store.Store.
func (s *Store) DeleteRoom(ctx context.Context, room string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		// Explicitly, so engines without cascading deletes behave the same.
		if _, err := tx.ExecContext(ctx, `DELETE FROM muc_affiliations WHERE room_jid = $1`, room); err != nil {
			return err
		}
		// A room created later under the same name must not inherit it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM archive WHERE user_jid = $1`, room); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM muc_rooms WHERE jid = $1`, room)
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return s.fail("delete room", room, err)
	}
	return nil
}

// Rooms implements store.Store.
func (s *Store) Rooms(ctx context.Context, domain string) ([]store.Room, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT jid, config, subject FROM muc_rooms WHERE domain = $1`, domain)
	rooms, err := collect(rows, err, func(r *sql.Rows, v *store.Room) error {
		return r.Scan(&v.JID, &v.Config, &v.Subject)
	})
	if err != nil {
		return nil, s.fail("rooms", domain, err)
	}
	slices.SortFunc(rooms, func(a, b store.Room) int { return cmp.Compare(a.JID, b.JID) })
	return rooms, nil
}

// SetRoomAffiliation implements store.Store.
func (s *Store) SetRoomAffiliation(ctx context.Context, room string, a store.RoomAffiliation) error {
	const op = "set room affiliation"
	key := room + " " + a.JID
	if err := errors.Join(checkKey("room", room), checkKey("jid", a.JID)); err != nil {
		return s.fail(op, key, err)
	}
	switch a.Affiliation {
	case "", "none", "owner", "admin", "member", "outcast":
	default:
		return s.fail(op, key, fmt.Errorf("invalid affiliation %q", a.Affiliation))
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM muc_rooms WHERE jid = $1`, room).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if a.Affiliation == "" || a.Affiliation == "none" {
			_, err = tx.ExecContext(ctx, `DELETE FROM muc_affiliations WHERE room_jid = $1 AND jid = $2`, room, a.JID)
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO muc_affiliations (room_jid, jid, affiliation, reason) VALUES ($1, $2, $3, $4)
			ON CONFLICT (room_jid, jid) DO UPDATE SET affiliation = excluded.affiliation, reason = excluded.reason`,
			room, a.JID, a.Affiliation, a.Reason)
		return err
	})
	if err != nil {
		return s.fail(op, key, err)
	}
	return nil
}

// RoomAffiliations implements store.Store.
func (s *Store) RoomAffiliations(ctx context.Context, room string) ([]store.RoomAffiliation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT jid, affiliation, reason FROM muc_affiliations WHERE room_jid = $1`, room)
	affs, err := collect(rows, err, func(r *sql.Rows, v *store.RoomAffiliation) error {
		return r.Scan(&v.JID, &v.Affiliation, &v.Reason)
	})
	if err != nil {
		return nil, s.fail("room affiliations", room, err)
	}
	slices.SortFunc(affs, func(a, b store.RoomAffiliation) int { return cmp.Compare(a.JID, b.JID) })
	return affs, nil
}
