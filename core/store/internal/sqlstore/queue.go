package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

const queueColumns = `id, queue, COALESCE(key, ''), dest, priority, meta, payload, attempts, created, due, expires, lease, last_error`

// unixMicro is t in Unix microseconds, with the zero time as 0.
func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

func scanQueueItem(r interface{ Scan(...any) error }, it *store.QueueItem) error {
	var meta string
	var created, due, expires int64
	if err := r.Scan(&it.ID, &it.Queue, &it.Key, &it.Dest, &it.Priority, &meta, &it.Payload, &it.Attempts,
		&created, &due, &expires, &it.Lease, &it.LastError); err != nil {
		return err
	}
	it.Created, it.Due, it.Expires = fromMicro(created), fromMicro(due), fromMicro(expires)
	if meta != "" && meta != "{}" {
		if err := json.Unmarshal([]byte(meta), &it.Meta); err != nil {
			return fmt.Errorf("item %d: meta: %w", it.ID, err)
		}
	}
	return nil
}

// addQueueItems inserts items inside tx; ErrExists if a key is taken.
func addQueueItems(ctx context.Context, tx *sql.Tx, items []store.QueueItem) ([]int64, error) {
	now := time.Now()
	ids := make([]int64, 0, len(items))
	for _, it := range items {
		if err := checkKey("queue", it.Queue); err != nil {
			return nil, err
		}
		meta := []byte("{}")
		if len(it.Meta) > 0 {
			var err error
			if meta, err = json.Marshal(it.Meta); err != nil {
				return nil, fmt.Errorf("meta: %w", err)
			}
		}
		created := it.Created
		if created.IsZero() {
			created = now
		}
		due := it.Due
		if due.IsZero() {
			due = created
		}
		payload := it.Payload
		if payload == nil {
			payload = []byte{}
		}
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO queue_items
			(queue, key, dest, priority, meta, payload, attempts, created, due, expires, lease, last_error, done)
			VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, 0, $7, $8, $9, '', '', 0)
			ON CONFLICT (queue, key) DO NOTHING RETURNING id`,
			it.Queue, it.Key, it.Dest, it.Priority, string(meta), payload,
			created.UnixMicro(), due.UnixMicro(), unixMicro(it.Expires)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("key %q: %w", it.Key, store.ErrExists)
		}
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// QueueAdd implements store.Store.
func (s *Store) QueueAdd(ctx context.Context, items []store.QueueItem) ([]int64, error) {
	if len(items) == 0 {
		return nil, nil
	}
	var ids []int64
	// Durable: a queued item is often a promise already made (mail
	// answered 250) that must outlive a power loss.
	err := s.writeDurable(ctx, func(tx *sql.Tx) error {
		var err error
		ids, err = addQueueItems(ctx, tx, items)
		return err
	})
	if err != nil {
		return nil, s.fail("queue add", items[0].Queue, err)
	}
	return ids, nil
}

// QueueDue implements store.Store.
func (s *Store) QueueDue(ctx context.Context, q store.QueueDueQuery) ([]store.QueueItem, error) {
	if q.Max <= 0 {
		return nil, nil
	}
	var b strings.Builder
	args := []any{q.Queue, q.Now.UnixMicro()}
	// Only what the covering index queue_items_order holds: candidates are
	// many and most are not claimed by this call; QueueClaim returns the
	// whole item.
	b.WriteString(`SELECT id, dest, priority, due FROM queue_items WHERE queue = $1 AND done = 0 AND due <= $2`)
	if len(q.SkipDests) > 0 {
		b.WriteString(` AND dest NOT IN (`)
		for i, d := range q.SkipDests {
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, d)
			b.WriteString("$" + strconv.Itoa(len(args)))
		}
		b.WriteString(`)`)
	}
	args = append(args, q.Max)
	b.WriteString(` ORDER BY priority DESC, due, id LIMIT $` + strconv.Itoa(len(args)))
	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	items, err := collect(rows, err, func(r *sql.Rows, v *store.QueueItem) error {
		var due int64
		if err := r.Scan(&v.ID, &v.Dest, &v.Priority, &due); err != nil {
			return err
		}
		v.Queue, v.Due = q.Queue, fromMicro(due)
		return nil
	})
	if err != nil {
		return nil, s.fail("queue due", q.Queue, err)
	}
	return items, nil
}

// QueueClaim implements store.Store.
func (s *Store) QueueClaim(ctx context.Context, queue string, id int64, lease string, now, until time.Time) (store.QueueItem, error) {
	const op = "queue claim"
	key := queue + " " + strconv.FormatInt(id, 10)
	if err := checkKey("lease", lease); err != nil {
		return store.QueueItem{}, s.fail(op, key, err)
	}
	var it store.QueueItem
	err := s.write(ctx, func(tx *sql.Tx) error {
		// The condition on due makes a claim exclusive: a second claimant,
		// in this process or another, finds the item no longer due.
		row := tx.QueryRowContext(ctx, `UPDATE queue_items SET lease = $1, due = $2, attempts = attempts + 1
			WHERE queue = $3 AND id = $4 AND done = 0 AND due <= $5 RETURNING `+queueColumns,
			lease, until.UnixMicro(), queue, id, now.UnixMicro())
		err := scanQueueItem(row, &it)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.QueueItem{}, s.fail(op, key, err)
	}
	return it, nil
}

// QueueDone implements store.Store.
func (s *Store) QueueDone(ctx context.Context, queue string, id int64, lease string, followUps []store.QueueItem) error {
	write := s.write
	if len(followUps) > 0 {
		write = s.writeDurable // follow-ups are new items (bounces), as in QueueAdd
	}
	err := write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE queue_items SET done = $1, lease = '', payload = $2, meta = '{}'
			WHERE queue = $3 AND id = $4 AND done = 0 AND lease = $5 AND lease <> ''`,
			time.Now().UnixMicro(), []byte{}, queue, id, lease)
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		_, err = addQueueItems(ctx, tx, followUps)
		return err
	})
	if err != nil {
		return s.fail("queue done", queue+" "+strconv.FormatInt(id, 10), err)
	}
	return nil
}

// QueueRetry implements store.Store.
func (s *Store) QueueRetry(ctx context.Context, queue string, id int64, lease string, due time.Time, lastError string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE queue_items SET lease = '', due = $1, last_error = $2
			WHERE queue = $3 AND id = $4 AND done = 0 AND lease = $5 AND lease <> ''`,
			due.UnixMicro(), lastError, queue, id, lease)
		return affected(res, err, store.ErrNotFound)
	})
	if err != nil {
		return s.fail("queue retry", queue+" "+strconv.FormatInt(id, 10), err)
	}
	return nil
}

// QueueRelease implements store.Store.
func (s *Store) QueueRelease(ctx context.Context, queue, prefix string) (int64, error) {
	const op = "queue release"
	if err := checkKey("prefix", prefix); err != nil {
		return 0, s.fail(op, queue, err)
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE queue_items SET lease = '', due = $1
			WHERE queue = $2 AND done = 0 AND lease <> '' AND substr(lease, 1, $3) = $4`,
			time.Now().UnixMicro(), queue, len(prefix), prefix)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.fail(op, queue, err)
	}
	return n, nil
}

// QueueNextDue implements store.Store.
func (s *Store) QueueNextDue(ctx context.Context, queue string) (time.Time, bool, error) {
	var due sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT MIN(due) FROM queue_items WHERE queue = $1 AND done = 0`, queue).Scan(&due)
	if err != nil {
		return time.Time{}, false, s.fail("queue next due", queue, err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMicro(due.Int64), true, nil
}

// QueueGet implements store.Store.
func (s *Store) QueueGet(ctx context.Context, queue string, id int64) (store.QueueItem, error) {
	var it store.QueueItem
	row := s.r.QueryRowContext(ctx, `SELECT `+queueColumns+` FROM queue_items WHERE queue = $1 AND id = $2 AND done = 0`, queue, id)
	err := scanQueueItem(row, &it)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.QueueItem{}, s.fail("queue get", queue+" "+strconv.FormatInt(id, 10), err)
	}
	return it, nil
}

// QueueCount implements store.Store.
func (s *Store) QueueCount(ctx context.Context, queue string) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue_items WHERE queue = $1 AND done = 0`, queue).Scan(&n); err != nil {
		return 0, s.fail("queue count", queue, err)
	}
	return n, nil
}

// QueuePrune implements store.Store.
func (s *Store) QueuePrune(ctx context.Context, queue string, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM queue_items WHERE queue = $1 AND done > 0 AND done < $2`,
			queue, before.UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.fail("queue prune", queue, err)
	}
	return n, nil
}
