package mam

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// errBadRequest marks a query the client got wrong; its text goes back.
type errBadRequest string

func (e errBadRequest) Error() string { return string(e) }

// HandleIQ answers a urn:xmpp:mam:2 iq that owner's own session (requester)
// sent: query get (the form's fields), query set (a query), prefs get/set.
// It calls send for each result message in order and finally for the iq
// result or error. A query sees every message Record accepted before it.
func (a *Archiver) HandleIQ(ctx context.Context, owner, requester jid.JID, st *wire.Element, send func(*wire.Element)) {
	owner = owner.Bare()
	if requester.Bare() != owner {
		send(stanza.Error(st, stanza.Cancel, "forbidden", ""))
		return
	}
	a.handle(ctx, owner, requester, st, false, send)
}

// HandleRoomIQ answers a urn:xmpp:mam:2 iq sent to a MUC room's bare JID
// (XEP-0313 §5): query get and set as HandleIQ, on the archive RecordRoom
// keeps for room. The MUC service has decided that requester may read it.
// Results come from the room's bare JID to requester; a with filter is an
// occupant JID (room@service/nick) and matches that nick's messages.
// Room archives have no preferences: prefs get feature-not-implemented.
func (a *Archiver) HandleRoomIQ(ctx context.Context, room, requester jid.JID, st *wire.Element, send func(*wire.Element)) {
	a.handle(ctx, room.Bare(), requester, st, true, send)
}

func (a *Archiver) handle(ctx context.Context, owner, requester jid.JID, st *wire.Element, room bool, send func(*wire.Element)) {
	p := stanza.Payload(st)
	typ := st.Attr("type")
	switch {
	case p == nil || p.Space != NS || (typ != "get" && typ != "set"):
		send(stanza.Error(st, stanza.Modify, "bad-request", ""))
	case p.Local() == "prefs" && !room:
		a.prefsIQ(ctx, owner, st, p, send)
	case p.Local() == "query" && typ == "get":
		res := stanza.Result(st)
		res.AddChild(wire.New("query", NS)).AddChild(formFields())
		send(res)
	case p.Local() == "query":
		a.queries.Inc()
		a.query(ctx, owner, requester, st, p, room, send)
	default:
		send(stanza.Error(st, stanza.Cancel, "feature-not-implemented", ""))
	}
}

// RoomHistory returns the last n messages of room's archive (those
// RecordRoom accepted before the call), oldest first, as stored: the
// reflected stanza, from the occupant JID and without to. The MUC service
// fills the history of a room loaded after a restart from it.
func (a *Archiver) RoomHistory(ctx context.Context, room jid.JID, n int) ([]store.ArchivedMessage, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := a.flush(ctx); err != nil {
		return nil, err
	}
	msgs, _, err := a.st.QueryArchive(ctx, room.Bare().String(), store.ArchiveQuery{Max: n, Last: true})
	return msgs, err
}

// formFields is the query form (XEP-0313 §4.1.1, with the extended fields).
func formFields() *wire.Element {
	x := wire.New("x", NSData)
	x.SetAttr("type", "form")
	ft := x.AddChild(wire.New("field", ""))
	ft.SetAttr("var", "FORM_TYPE").SetAttr("type", "hidden")
	ft.AddChild(wire.New("value", "")).AddText(NS)
	for _, f := range []struct{ v, t string }{
		{"with", "jid-single"}, {"start", "text-single"}, {"end", "text-single"},
		{"before-id", "text-single"}, {"after-id", "text-single"}, {"ids", "text-multi"},
	} {
		x.AddChild(wire.New("field", "")).SetAttr("var", f.v).SetAttr("type", f.t)
	}
	return x
}

// request is a parsed query.
type request struct {
	q                   store.ArchiveQuery // filters of the whole result set (count uses them)
	checkID             []string           // ids that must exist (item-not-found otherwise)
	rsmAfter, rsmBefore string
	last                bool // page from the end (RSM <before/>)
	max                 int
}

// parseQuery reads the form and the RSM set of a <query/>; room: of a room
// archive, whose with values are occupant JIDs.
func (a *Archiver) parseQuery(p *wire.Element, room bool) (request, error) {
	r := request{max: a.cfg.MaxPage}
	if x := p.Child("x", NSData); x != nil {
		for f := range x.Elements() {
			if f.Local() != "field" {
				continue
			}
			var vals []string
			for v := range f.Elements() {
				if v.Local() == "value" {
					vals = append(vals, v.Text())
				}
			}
			one := func() (string, error) {
				if len(vals) != 1 {
					return "", errBadRequest("field " + f.Attr("var") + " needs one value")
				}
				return vals[0], nil
			}
			var (
				v   string
				err error
			)
			switch name := f.Attr("var"); name {
			case "FORM_TYPE":
				if v, err = one(); err == nil && v != NS {
					err = errBadRequest("FORM_TYPE is not " + NS)
				}
			case "with":
				if v, err = one(); err == nil {
					var j jid.JID
					if j, err = jid.Parse(v); err != nil {
						err = errBadRequest("bad with")
					}
					// Archives are kept by bare JID, so a full JID matches its
					// bare JID; a room's by occupant JID.
					if !room {
						j = j.Bare()
					}
					r.q.With = j.String()
				}
			case "start", "end":
				if v, err = one(); err == nil {
					var t time.Time
					if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
						err = errBadRequest("bad " + name)
					} else if name == "start" {
						r.q.Start = t
					} else {
						r.q.End = t
					}
				}
			case "after-id":
				if v, err = one(); err == nil {
					r.q.AfterID = v
					r.checkID = append(r.checkID, v)
				}
			case "before-id":
				if v, err = one(); err == nil {
					r.q.BeforeID = v
					r.checkID = append(r.checkID, v)
				}
			case "ids":
				r.q.IDs = append([]string{}, vals...)
			default:
				err = errBadRequest("unsupported field " + name)
			}
			if err != nil {
				return r, err
			}
		}
	}
	if set := p.Child("set", NSRSM); set != nil {
		if s := set.Child("max", NSRSM); s != nil {
			n, err := strconv.Atoi(s.Text())
			if err != nil || n < 0 {
				return r, errBadRequest("bad max")
			}
			r.max = min(n, a.cfg.MaxPage)
		}
		if s := set.Child("after", NSRSM); s != nil {
			if r.rsmAfter = s.Text(); r.rsmAfter == "" {
				return r, errBadRequest("empty after")
			}
			r.checkID = append(r.checkID, r.rsmAfter)
		}
		if s := set.Child("before", NSRSM); s != nil {
			r.last = true
			if r.rsmBefore = s.Text(); r.rsmBefore != "" {
				r.checkID = append(r.checkID, r.rsmBefore)
			}
		}
		if set.Child("index", NSRSM) != nil {
			return r, errFeature
		}
	}
	return r, nil
}

var errFeature = errors.New("RSM index is not supported")

// query runs a query set and sends its results and <fin/>.
func (a *Archiver) query(ctx context.Context, owner, requester jid.JID, st, p *wire.Element, room bool, send func(*wire.Element)) {
	r, err := a.parseQuery(p, room)
	if err != nil {
		if errors.Is(err, errFeature) {
			send(stanza.Error(st, stanza.Cancel, "feature-not-implemented", err.Error()))
		} else {
			send(stanza.Error(st, stanza.Modify, "bad-request", err.Error()))
		}
		return
	}
	fail := func(what string, err error) {
		a.log.Error("archive query failed", "user", owner, "step", what, "err", err)
		send(stanza.Error(st, stanza.Wait, "internal-server-error", ""))
	}
	if err := a.flush(ctx); err != nil {
		fail("flush", err)
		return
	}
	user := owner.String()
	for _, id := range r.checkID {
		ok, err := a.st.HasArchived(ctx, user, id)
		if err != nil {
			fail("find id", err)
			return
		}
		if !ok {
			send(stanza.Error(st, stanza.Cancel, "item-not-found", "no message "+id+" in the archive"))
			return
		}
	}
	count := 0
	if a.cfg.Labels == nil {
		if count, err = a.st.CountArchive(ctx, user, r.q); err != nil {
			fail("count", err)
			return
		}
	}
	page := r.q
	page.Max, page.Last = r.max, r.last
	// The RSM bounds narrow the form's id bounds; ids sort as text.
	if r.rsmAfter != "" && r.rsmAfter > page.AfterID {
		page.AfterID = r.rsmAfter
	}
	if r.rsmBefore != "" && (page.BeforeID == "" || r.rsmBefore < page.BeforeID) {
		page.BeforeID = r.rsmBefore
	}
	queryID := p.Attr("queryid")
	var results []*wire.Element
	var first, last string
	more := false
	// With labels on, messages the requester is not cleared for are left
	// out (silently, PROTOCOLS.md §1.9 row 6) and the page is filled from
	// further on, within a bound; the count, which would tell how many were
	// held back, is left out.
	g := a.cfg.Labels
	var clr *label.Clearance
	if g != nil {
		clr = g.Clearance(ctx, requester.Bare())
	}
	var kept []store.ArchivedMessage
	for round := 0; round < maxFilterRounds; round++ {
		msgs, m, err := a.st.QueryArchive(ctx, user, page)
		if err != nil {
			fail("query", err)
			return
		}
		more = m
		var got []store.ArchivedMessage
		for _, am := range msgs {
			inner, err := wire.ParseElement(am.Stanza)
			if err != nil {
				// Stored by us, so this is corruption: skip it rather than fail the page.
				a.log.Error("archived message unreadable", "user", owner, "id", am.ID, "err", err)
				continue
			}
			if g != nil && !g.Allowed(inner, clr, nil, seclabel.PointArchive, requester.Bare().String()) {
				continue
			}
			am.Stanza = ""
			got = append(got, am)
			results = append(results, resultMessage(owner, requester, queryID, am, inner))
		}
		if page.Last {
			kept = append(got, kept...)
		} else {
			kept = append(kept, got...)
		}
		if g == nil || len(kept) >= r.max || !more || len(msgs) == 0 {
			break
		}
		page.Max = r.max - len(kept)
		if page.Last {
			page.BeforeID = msgs[0].ID
		} else {
			page.AfterID = msgs[len(msgs)-1].ID
		}
	}
	if page.Last {
		// Rounds paging backwards fetched older messages later: send in archive order.
		results = archiveOrder(results, kept)
	}
	for _, m := range results {
		send(m)
	}
	if len(kept) > 0 {
		first, last = kept[0].ID, kept[len(kept)-1].ID
	}
	res := stanza.Result(st)
	fin := res.AddChild(wire.New("fin", NS))
	fin.SetAttr("complete", strconv.FormatBool(!more))
	set := fin.AddChild(wire.New("set", NSRSM))
	if first != "" {
		set.AddChild(wire.New("first", "")).AddText(first)
		set.AddChild(wire.New("last", "")).AddText(last)
	}
	if g == nil {
		set.AddChild(wire.New("count", "")).AddText(strconv.Itoa(count))
	}
	send(res)
}

// maxFilterRounds bounds the store reads one filtered page may take.
const maxFilterRounds = 8

// archiveOrder sorts results (built round by round) into the ascending id
// order of kept.
func archiveOrder(results []*wire.Element, kept []store.ArchivedMessage) []*wire.Element {
	byID := make(map[string]*wire.Element, len(results))
	for _, m := range results {
		byID[m.Child("result", NS).Attr("id")] = m
	}
	out := make([]*wire.Element, 0, len(kept))
	for _, k := range kept {
		out = append(out, byID[k.ID])
	}
	return out
}

// resultMessage wraps an archived stanza for the requester (XEP-0313 §4.2).
func resultMessage(owner, requester jid.JID, queryID string, m store.ArchivedMessage, inner *wire.Element) *wire.Element {
	msg := wire.New("message", "")
	msg.SetAttr("to", requester.String()).SetAttr("from", owner.String())
	res := msg.AddChild(wire.New("result", NS))
	if queryID != "" {
		res.SetAttr("queryid", queryID)
	}
	res.SetAttr("id", m.ID)
	fwd := res.AddChild(wire.New("forwarded", stanza.NSForward))
	fwd.AddChild(wire.New("delay", stanza.NSDelay)).SetAttr("stamp", m.Stored.UTC().Format(time.RFC3339Nano))
	inner.RemoveAttr("xmlns")
	inner.SetAttr("xmlns", stanza.NSClient)
	fwd.AddChild(inner)
	return msg
}
