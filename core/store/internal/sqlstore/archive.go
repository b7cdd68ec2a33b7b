package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

// AppendArchive implements store.Store.
func (s *Store) AppendArchive(ctx context.Context, msgs []store.ArchivedMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO archive (user_jid, id, with_jid, stored, stanza)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_jid, id) DO NOTHING`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, m := range msgs {
			if err := errors.Join(checkKey("user", m.User), checkKey("id", m.ID)); err != nil {
				return err
			}
			res, err := st.ExecContext(ctx, m.User, m.ID, m.With, m.Stored.UnixMicro(), m.Stanza)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("%s id %q: %w", m.User, m.ID, store.ErrExists)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: append archive: %w", s.name, err)
	}
	return nil
}

// archiveWhere builds the WHERE clause of q for user and its arguments.
func archiveWhere(user string, q store.ArchiveQuery) (string, []any) {
	var b strings.Builder
	args := []any{user}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	b.WriteString(`user_jid = $1`)
	if q.With != "" {
		b.WriteString(` AND with_jid = ` + arg(q.With))
	}
	if !q.Start.IsZero() {
		b.WriteString(` AND stored >= ` + arg(q.Start.UnixMicro()))
	}
	if !q.End.IsZero() {
		b.WriteString(` AND stored <= ` + arg(q.End.UnixMicro()))
	}
	if q.AfterID != "" {
		b.WriteString(` AND id > ` + arg(q.AfterID))
	}
	if q.BeforeID != "" {
		b.WriteString(` AND id < ` + arg(q.BeforeID))
	}
	if q.IDs != nil {
		if len(q.IDs) == 0 {
			b.WriteString(` AND 1 = 0`)
		} else {
			b.WriteString(` AND id IN (`)
			for i, id := range q.IDs {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(arg(id))
			}
			b.WriteString(`)`)
		}
	}
	return b.String(), args
}

// QueryArchive implements store.Store.
func (s *Store) QueryArchive(ctx context.Context, user string, q store.ArchiveQuery) ([]store.ArchivedMessage, bool, error) {
	if q.Max <= 0 {
		n, err := s.CountArchive(ctx, user, q)
		return nil, n > 0, err
	}
	msgs, more, err := func() ([]store.ArchivedMessage, bool, error) {
		where, args := archiveWhere(user, q)
		order := "ASC"
		if q.Last {
			order = "DESC"
		}
		// One extra row tells whether there is more. The limit is written
		// into the SQL rather than bound: it is our own integer.
		rows, err := s.r.QueryContext(ctx, `SELECT id, with_jid, stored, stanza FROM archive WHERE `+where+
			` ORDER BY id `+order+` LIMIT `+strconv.Itoa(q.Max+1), args...)
		out, err := collect(rows, err, func(r *sql.Rows, m *store.ArchivedMessage) error {
			var stored int64
			err := r.Scan(&m.ID, &m.With, &stored, &m.Stanza)
			m.User, m.Stored = user, time.UnixMicro(stored).UTC()
			return err
		})
		if err != nil {
			return nil, false, err
		}
		more := len(out) > q.Max
		if more {
			out = out[:q.Max]
		}
		if q.Last {
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
		}
		return out, more, nil
	}()
	if err != nil {
		return nil, false, s.fail("query archive", user, err)
	}
	return msgs, more, nil
}

// CountArchive implements store.Store.
func (s *Store) CountArchive(ctx context.Context, user string, q store.ArchiveQuery) (int, error) {
	where, args := archiveWhere(user, q)
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM archive WHERE `+where, args...).Scan(&n); err != nil {
		return 0, s.fail("count archive", user, err)
	}
	return n, nil
}

// HasArchived implements store.Store.
func (s *Store) HasArchived(ctx context.Context, user, id string) (bool, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM archive WHERE user_jid = $1 AND id = $2`, user, id).Scan(&n); err != nil {
		return false, s.fail("find archived", user+" "+id, err)
	}
	return n > 0, nil
}

// PruneArchive implements store.Store.
func (s *Store) PruneArchive(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM archive WHERE stored < $1`, before.UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.fail("prune archive", before.UTC().Format(time.RFC3339), err)
	}
	return n, nil
}
