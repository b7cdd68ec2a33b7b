package router

import (
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// queryTimeout bounds how long the server waits for an answer to its own iq.
const queryTimeout = 30 * time.Second

type pendingQuery struct {
	to jid.JID
	cb func(*wire.Element)
}

// query sends an iq get from the server (from, one of the domains served)
// to an entity and calls cb with the answer, or with nil after
// queryTimeout (or the domain's own, SetQueryTimeout). cb runs on whatever goroutine delivers the answer, so it
// must only post events.
func (r *Router) query(from, to jid.JID, payload *wire.Element, cb func(*wire.Element)) {
	id := "aldis-" + randomID()
	iq := wire.New("iq", "")
	iq.SetAttr("type", "get")
	iq.SetAttr("id", id)
	iq.SetAttr("from", from.String())
	iq.SetAttr("to", to.String())
	iq.AddChild(payload)
	r.qmu.Lock()
	r.queries[id] = pendingQuery{to: to, cb: cb}
	r.qmu.Unlock()
	timeout := queryTimeout
	if d, ok := r.queryTimeouts[to.Domain()]; ok {
		timeout = d
	}
	time.AfterFunc(timeout, func() {
		if q, ok := r.takeQuery(id, to); ok {
			q.cb(nil)
		}
	})
	r.route(iq, from, to)
}

// SetQueryTimeout makes the server wait d for answers from domain to its
// own iqs: minutes for a domain behind an HF link, where a round trip can
// take longer than queryTimeout. Call it before serving starts.
func (r *Router) SetQueryTimeout(domain string, d time.Duration) {
	if r.queryTimeouts == nil {
		r.queryTimeouts = make(map[string]time.Duration)
	}
	r.queryTimeouts[domain] = d
}

func (r *Router) takeQuery(id string, from jid.JID) (pendingQuery, bool) {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	q, ok := r.queries[id]
	if !ok || q.to != from {
		// Only the entity asked may answer: anyone else could feed the
		// server forged capabilities.
		return pendingQuery{}, false
	}
	delete(r.queries, id)
	return q, true
}

// answer delivers an iq result or error addressed to the server to the
// query waiting for it; it reports whether one was.
func (r *Router) answer(st *wire.Element, from jid.JID) bool {
	q, ok := r.takeQuery(st.Attr("id"), from)
	if ok {
		q.cb(st)
	}
	return ok
}
