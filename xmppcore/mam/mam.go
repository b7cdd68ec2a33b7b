// Package mam is the server-side message archive (XEP-0313 Message Archive
// Management, urn:xmpp:mam:2): it records a user's one-to-one messages and
// the groupchat messages of MUC rooms (an archive per room, §5), answers
// archive queries with Result Set Management (XEP-0059) paging, and keeps
// per-user archiving preferences.
package mam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Namespaces this package speaks.
const (
	NS       = "urn:xmpp:mam:2"
	NSExt    = "urn:xmpp:mam:2#extended" // before-id, after-id, ids
	NSRSM    = "http://jabber.org/protocol/rsm"
	NSData   = "jabber:x:data"
	NSSID    = "urn:xmpp:sid:0" // XEP-0359 stanza-id
	nsHints  = "urn:xmpp:hints"
	prefsKey = "mam:prefs" // store.GetXML key of a user's preferences
)

const (
	defaultMaxPage = 100
	batchMax       = 4096                   // messages per write transaction
	batchLinger    = 250 * time.Millisecond // how long a batch gathers before it is committed
	queueLen       = 16384                  // pending writes before Record waits for room
	writeTimeout   = 30 * time.Second
	pruneEvery     = time.Hour
	prefsCacheMax  = 10000 // users whose preferences are cached
)

// Config configures an Archiver.
type Config struct {
	Retention time.Duration // 0 = keep forever; older messages are pruned periodically
	MaxPage   int           // RSM max cap (default 100)
	Log       *slog.Logger
	Metrics   *obs.Metrics
	// Labels filters query results by the requester's clearance; nil: off.
	Labels *seclabel.Guard

	// For tests: the clock, the pruning interval and the queue length.
	now        func() time.Time
	pruneEvery time.Duration
	queueLen   int
}

// Archiver records messages into users' archives and answers their queries.
// It is safe for concurrent use.
type Archiver struct {
	st  store.Store
	cfg Config
	log *slog.Logger

	idMu           sync.Mutex
	lastHi, lastLo uint64

	// mu orders Record and flush (read side) against Close (write side), so
	// nothing is sent on the queue after it is closed.
	mu     sync.RWMutex
	closed bool
	queue  chan item
	wrote  chan struct{} // closed when the writer has drained the queue
	pruned chan struct{} // closed when the pruner has stopped
	cancel context.CancelFunc

	prefsMu sync.Mutex
	prefs   map[string]*prefs // by owner bare JID

	archived    *metrics.Counter
	queries     *metrics.Counter
	writeErrors *metrics.Counter
	writeTime   *metrics.Histogram
}

// item is a queued write, or a flush marker (flushed != nil) that the writer
// closes once everything queued before it is committed.
type item struct {
	msg     store.ArchivedMessage
	flushed chan struct{}
}

// New starts an Archiver over st: its writer and, with a retention, its pruner.
func New(st store.Store, cfg Config) *Archiver {
	if cfg.MaxPage <= 0 {
		cfg.MaxPage = defaultMaxPage
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.pruneEvery <= 0 {
		cfg.pruneEvery = pruneEvery
	}
	if cfg.queueLen <= 0 {
		cfg.queueLen = queueLen
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Archiver{
		st:          st,
		cfg:         cfg,
		log:         cfg.Log.With("component", "mam"),
		queue:       make(chan item, cfg.queueLen),
		wrote:       make(chan struct{}),
		pruned:      make(chan struct{}),
		cancel:      cancel,
		prefs:       make(map[string]*prefs),
		archived:    cfg.Metrics.Counter("aldis_mam_archived_total"),
		queries:     cfg.Metrics.Counter("aldis_mam_queries_total"),
		writeErrors: cfg.Metrics.Counter("aldis_mam_write_errors_total"),
		writeTime:   cfg.Metrics.Histogram("aldis_mam_write_seconds"),
	}
	cfg.Metrics.Gauge("aldis_mam_queue_depth", func() float64 { return float64(len(a.queue)) })
	go a.write()
	go a.prune(ctx)
	return a
}

// Close flushes pending writes and stops the writer and pruner.
func (a *Archiver) Close(ctx context.Context) error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
		a.cancel()
	}
	a.mu.Unlock()
	for _, ch := range []chan struct{}{a.wrote, a.pruned} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("mam: close: %w", ctx.Err())
		}
	}
	return nil
}

// nextID returns a new archive id and the time it stands for. Ids are 32 hex
// digits: Unix microseconds, then a per-instant sequence started at a random
// value, so they sort as text in archive order and differ across restarts.
// A clock that steps back reuses the last instant rather than going back.
func (a *Archiver) nextID() (string, time.Time) {
	hi := uint64(a.cfg.now().UnixMicro())
	a.idMu.Lock()
	var lo uint64
	if hi <= a.lastHi {
		hi, lo = a.lastHi, a.lastLo+1
		if lo == 0 {
			hi++
		}
	} else {
		lo = rand.Uint64() >> 1 // room to count up within the instant
	}
	a.lastHi, a.lastLo = hi, lo
	a.idMu.Unlock()
	return fmt.Sprintf("%016x%016x", hi, lo), time.UnixMicro(int64(hi)).UTC()
}

// Record archives st in owner's archive (owner = bare JID of the user; with =
// the other party's bare JID; outgoing = the owner sent it) and returns the
// archive id, to be used as the XEP-0359 stanza-id, or "" when the message
// is not archived (not Eligible, the owner's preferences, a failed write).
// The write is queued; when the queue is full it happens before Record returns.
func (a *Archiver) Record(owner, with jid.JID, st *wire.Element, outgoing bool) string {
	owner, with = owner.Bare(), with.Bare()
	if owner.IsZero() || with.IsZero() || !Eligible(st) || !a.wanted(owner, with) {
		return ""
	}
	// The direction is in the stanza's own from and to; it needs no column.
	_ = outgoing
	return a.enqueue(owner, with, st)
}

// RecordRoom archives a groupchat message of a MUC room in the room's
// archive (XEP-0313 §5): room is the room's bare JID and st the message as
// the room reflects it, from the occupant JID room@service/nick, which is
// the archive's with. It returns the archive id, which the room puts in the
// stanza-id of the copies it sends, or "" when the message is not archived
// (no body, a no-store hint, not from an occupant of room, a failed write).
// Whether the room keeps an archive is for the MUC service to decide; room
// archives have no preferences. The write is queued as for Record.
func (a *Archiver) RecordRoom(room jid.JID, st *wire.Element) string {
	room = room.Bare()
	if room.IsZero() || !eligibleGroupchat(st) {
		return ""
	}
	with, err := jid.Parse(st.Attr("from"))
	if err != nil || with.Bare() != room || with.Resource() == "" {
		return ""
	}
	return a.enqueue(room, with, st)
}

// eligibleGroupchat is Eligible for the messages of a room archive: type
// groupchat with a body and no hint against storing it.
func eligibleGroupchat(st *wire.Element) bool {
	if st == nil || st.Local() != "message" || st.Attr("type") != "groupchat" || st.Child("body", "") == nil {
		return false
	}
	return st.Child("no-store", nsHints) == nil && st.Child("no-permanent-store", nsHints) == nil
}

// enqueue queues st for owner's archive and returns its archive id, or ""
// when the write failed.
func (a *Archiver) enqueue(owner, with jid.JID, st *wire.Element) string {
	id, stamp := a.nextID()
	m := store.ArchivedMessage{User: owner.String(), ID: id, With: with.String(), Stored: stamp, Stanza: withoutForgedIDs(st, owner).String()}
	a.mu.RLock()
	if !a.closed {
		select {
		case a.queue <- item{msg: m}:
			a.mu.RUnlock()
			a.archived.Inc()
			return id
		default:
		}
		// Full: wait for room. Writing this message alone instead would
		// cost a transaction of its own, so under load every caller would
		// do that and the writer would fall further behind.
		t := time.NewTimer(writeTimeout)
		select {
		case a.queue <- item{msg: m}:
			t.Stop()
			a.mu.RUnlock()
			a.archived.Inc()
			return id
		case <-t.C:
		}
	}
	a.mu.RUnlock()
	// Closing, or the writer is stuck: write now, which slows the caller
	// down instead of dropping the message.
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := a.commit(ctx, []store.ArchivedMessage{m}); err != nil {
		return ""
	}
	a.archived.Inc()
	return id
}

// withoutForgedIDs returns st without <stanza-id/> elements that claim to be
// from owner's archive (XEP-0359 §5): only we may say what our ids are. st
// is copied only when there is something to remove.
func withoutForgedIDs(st *wire.Element, owner jid.JID) *wire.Element {
	forged := func(n wire.Node) bool {
		return n.Elem != nil && n.Elem.Local() == "stanza-id" && n.Elem.Space == NSSID && n.Elem.Attr("by") == owner.String()
	}
	if !slices.ContainsFunc(st.Nodes, forged) {
		return st
	}
	c := st.Copy()
	c.Nodes = slices.DeleteFunc(c.Nodes, forged)
	return c
}

// write is the writer goroutine: it commits what is queued in batches of up
// to batchMax, one transaction each, until the queue is closed and drained.
// A batch is whatever piled up while the previous one was written, so the
// batches grow with the load and an idle server writes at once.
func (a *Archiver) write() {
	defer close(a.wrote)
	var (
		msgs    []store.ArchivedMessage
		flushes []chan struct{}
	)
	for it := range a.queue {
		msgs, flushes = msgs[:0], flushes[:0]
		add := func(it item) {
			if it.flushed != nil {
				flushes = append(flushes, it.flushed)
			} else {
				msgs = append(msgs, it.msg)
			}
		}
		add(it)
		// Gather for a moment before committing: each commit rewrites the
		// index pages it touched, so a few large commits cost far less than
		// many small ones. A waiting query (a flush) ends the wait at once.
		linger := time.NewTimer(batchLinger)
	gather:
		for len(msgs) < batchMax && len(flushes) == 0 {
			select {
			case it, ok := <-a.queue:
				if !ok {
					break gather
				}
				add(it)
			case <-linger.C:
				break gather
			}
		}
		linger.Stop()
		if len(msgs) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			if err := a.commit(ctx, msgs); err != nil && len(msgs) > 1 {
				// Write one by one so one bad message doesn't lose the others.
				for _, m := range msgs {
					_ = a.commit(ctx, []store.ArchivedMessage{m})
				}
			}
			cancel()
		}
		for _, ch := range flushes {
			close(ch)
		}
	}
}

// commit writes msgs in one transaction, logging and counting failures.
func (a *Archiver) commit(ctx context.Context, msgs []store.ArchivedMessage) error {
	start := time.Now()
	err := a.st.AppendArchive(ctx, msgs)
	a.writeTime.UpdateDuration(start)
	if err != nil {
		a.writeErrors.Add(len(msgs))
		a.log.Error("archive write failed", "messages", len(msgs), "err", err)
		return fmt.Errorf("mam: archive: %w", err)
	}
	return nil
}

// Flush waits until every message recorded before the call is committed,
// for example before a room's archive is deleted with the room.
func (a *Archiver) Flush(ctx context.Context) error { return a.flush(ctx) }

// flush waits until every message queued before the call is committed.
func (a *Archiver) flush(ctx context.Context) error {
	ch := make(chan struct{})
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		ch = a.wrote // closing: wait for the writer to drain instead
	} else {
		select {
		case a.queue <- item{flushed: ch}:
			a.mu.RUnlock()
		case <-ctx.Done():
			a.mu.RUnlock()
			return ctx.Err()
		}
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// prune is the pruner goroutine: with a retention it deletes older
// messages at start and then every pruneEvery, until ctx ends.
func (a *Archiver) prune(ctx context.Context) {
	defer close(a.pruned)
	if a.cfg.Retention <= 0 {
		return
	}
	t := time.NewTicker(a.cfg.pruneEvery)
	defer t.Stop()
	for {
		a.pruneOnce(ctx)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (a *Archiver) pruneOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	n, err := a.st.PruneArchive(ctx, a.cfg.now().Add(-a.cfg.Retention))
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
	case err != nil:
		a.log.Error("archive pruning failed", "err", err)
	case n > 0:
		a.log.Info("archive pruned", "messages", n)
	}
}
