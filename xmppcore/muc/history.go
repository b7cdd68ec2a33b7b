package muc

import (
	"context"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// historyTimeout bounds reading a room's history from its archive.
const historyTimeout = 10 * time.Second

// history is a ring of the room's last messages, kept in memory only.
type history struct {
	max   int
	buf   []histEntry
	start int // index of the oldest entry once the ring is full
}

type histEntry struct {
	m     *wire.Element // as reflected, without to
	from  jid.JID
	real  jid.JID // the sender's real JID, for federated rooms (zero: unknown)
	stamp time.Time
	size  int // characters of the stanza, for maxchars
}

func (h *history) add(m *wire.Element, from, real jid.JID, now time.Time) {
	if h.max <= 0 {
		return
	}
	e := histEntry{m: m, from: from, real: real, stamp: now, size: utf8.RuneCountInString(m.String())}
	if len(h.buf) < h.max {
		h.buf = append(h.buf, e)
		return
	}
	h.buf[h.start] = e
	h.start = (h.start + 1) % len(h.buf)
}

// at returns the i-th entry, oldest first.
func (h *history) at(i int) histEntry { return h.buf[(h.start+i)%len(h.buf)] }

// select returns the entries a <history/> request asks for (XEP-0045
// §7.2.15), oldest first: the newest messages that satisfy every limit
// given. No request means all of them. Entries ok refuses (nil: none) are
// left out before the limits apply, so limits count what is delivered.
func (h *history) pick(req *wire.Element, now time.Time, ok func(histEntry) bool) []histEntry {
	n := len(h.buf)
	maxStanzas, maxChars := n, -1
	var since time.Time
	if req != nil {
		if v, ok := nonNegative(req.Attr("maxstanzas")); ok {
			maxStanzas = min(v, n)
		}
		if v, ok := nonNegative(req.Attr("maxchars")); ok {
			maxChars = v
		}
		if v, ok := nonNegative(req.Attr("seconds")); ok {
			since = now.Add(-time.Duration(v) * time.Second)
		}
		if v := req.Attr("since"); v != "" {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.After(since) {
				since = t
			}
		}
	}
	var out []histEntry
	chars := 0
	for i := n - 1; i >= 0 && len(out) < maxStanzas; i-- {
		e := h.at(i)
		if !since.IsZero() && !e.stamp.After(since) {
			break
		}
		if ok != nil && !ok(e) {
			continue
		}
		if maxChars >= 0 && chars+e.size > maxChars {
			break
		}
		chars += e.size
		out = append(out, e)
	}
	slices.Reverse(out)
	return out
}

func nonNegative(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// loadHistory fills the history of a room loaded from the store, which
// starts empty, with the last messages of its archive, once: at the first
// join, so that rooms nobody enters cost no reads at start.
func (r *room) loadHistory() {
	if !r.histLoad {
		return
	}
	r.histLoad = false
	ah, ok := r.s.cfg.Archive.(ArchiveHistory)
	if !ok || !r.archiving() || r.hist.max <= 0 || len(r.hist.buf) > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(r.s.ctx, historyTimeout)
	defer cancel()
	msgs, err := ah.RoomHistory(ctx, r.jid, r.hist.max)
	if err != nil {
		r.s.log.Error("load room history from the archive", "room", r.jid.String(), "err", err)
		return
	}
	for _, am := range msgs {
		m, err := wire.ParseElement(am.Stanza)
		if err != nil {
			r.s.log.Error("archived room message unreadable", "room", r.jid.String(), "id", am.ID, "err", err)
			continue
		}
		from, err := jid.Parse(m.Attr("from"))
		if err != nil || from.Bare() != r.jid {
			continue
		}
		m.RemoveAttr("to")
		m.AddChild(r.stanzaID(am.ID))
		r.hist.add(m, from, jid.JID{}, am.Stored)
	}
}

// sendHistory sends a joining session the history it asked for, each
// message with an XEP-0203 delay from the room.
func (r *room) sendHistory(to jid.JID, req *wire.Element) {
	var ok func(histEntry) bool
	if g := r.s.cfg.Labels; g != nil {
		c := r.clearanceOf(to.Bare())
		ok = func(e histEntry) bool {
			return g.Allowed(e.m, c, r.lab, seclabel.PointHistory, to.Bare().String())
		}
	}
	for _, e := range r.hist.pick(req, r.now(), ok) {
		m := e.m.WithAttr("to", to.String())
		m.AddChild(r.delay(e.stamp)) // m's children are capped: this copies them
		r.deliver(m, e.from, to)
	}
}

// insert adds an entry where its stamp puts it: history a federated room
// receives merges with the room's own by time (XEP-0289 §3.2).
func (h *history) insert(e histEntry) {
	if h.max <= 0 {
		return
	}
	n := len(h.buf)
	if n == 0 || !e.stamp.Before(h.at(n-1).stamp) {
		h.add(e.m, e.from, e.real, e.stamp)
		return
	}
	all := make([]histEntry, 0, n+1)
	for i := range n {
		all = append(all, h.at(i))
	}
	i, _ := slices.BinarySearchFunc(all, e.stamp, func(x histEntry, t time.Time) int { return x.stamp.Compare(t) })
	all = slices.Insert(all, i, e)
	if len(all) > h.max {
		all = all[len(all)-h.max:]
	}
	h.buf, h.start = all, 0
}
