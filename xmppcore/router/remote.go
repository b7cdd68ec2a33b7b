package router

import (
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Remote carries stanzas to domains this server does not serve: the
// server-to-server connections.
type Remote interface {
	// Send queues st for a remote recipient and never blocks. It must not
	// change st; a stanza it cannot deliver comes back through Inject as
	// an error from the remote domain.
	Send(st *wire.Element, from, to jid.JID)
}

// SetRemote makes rm carry stanzas for other domains; without it they are
// refused with remote-server-not-found. Call it before serving starts.
func (r *Router) SetRemote(rm Remote) { r.remote = rm }

// SetRemoteFor makes rm carry the stanzas for one domain instead of the
// default Remote: a constrained link to a ship, say. Call it before
// serving starts.
func (r *Router) SetRemoteFor(domain string, rm Remote) {
	if r.remotes == nil {
		r.remotes = make(map[string]Remote)
	}
	r.remotes[domain] = rm
}

func (r *Router) hasRemote() bool { return r.remote != nil || len(r.remotes) > 0 }

// sendRemote hands a stanza to the remote side once the peer's clearance
// grants its label (egress, PROTOCOLS.md §1.9 row 3); a refused message
// comes back to its sender as forbidden.
func (r *Router) sendRemote(st *wire.Element, from, to jid.JID) {
	rm := r.remotes[to.Domain()]
	if rm == nil {
		rm = r.remote
	}
	if rm == nil {
		r.bounce(st, stanza.Cancel, "remote-server-not-found")
		return
	}
	if r.egressAllowed(st, "peer:"+to.Domain()) {
		rm.Send(st, from, to)
	}
}

// egressAllowed checks a stanza leaving for an external principal and
// bounces a refused message to its sender.
func (r *Router) egressAllowed(st *wire.Element, principal string) bool {
	g := r.cfg.Labels
	if g == nil || st.Local() != "message" {
		return true
	}
	if g.EgressAllowed(st, principal) {
		return true
	}
	r.bounce(st, stanza.Auth, "forbidden")
	return false
}

// Inject routes a stanza from a trusted peer, a remote server or an
// external component, whose from the caller has verified. It never blocks.
// The peer's clearance must grant what it sends, as a local user's must
// (ingress, PROTOCOLS.md §1.9 row 2); unlabelled messages get the peer's
// default label.
func (r *Router) Inject(st *wire.Element, from, to jid.JID) {
	if g := r.cfg.Labels; g != nil {
		peer := "peer:" + from.Domain()
		p := g.Directory().Lookup(peer)
		toService := r.services[to.Domain()] != nil
		switch v, reply := g.Ingress(st, func() *label.Clearance { return p.Clearance }, p.Label, peer, !toService); v {
		case seclabel.Refuse:
			r.route(reply, to, from)
			return
		case seclabel.Discard:
			return
		}
	}
	if r.isHost(to.Domain()) && to.Local() == "" {
		r.peerToServer(st, from, to)
		return
	}
	r.route(st, from, to)
}

// peerToServer answers what a peer addresses to the server's own domain:
// pings and discovery, so that remote servers and their users can see
// who we are; everything else is refused.
func (r *Router) peerToServer(st *wire.Element, from, to jid.JID) {
	typ := st.Attr("type")
	reply := func(e *wire.Element) { r.route(e, to, from) }
	switch st.Local() {
	case "presence":
		return
	case "message":
		if typ != "error" {
			reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
		}
		return
	}
	if typ != "get" && typ != "set" {
		r.answer(st, from)
		return
	}
	p := stanza.Payload(st)
	switch {
	case p == nil:
		reply(stanza.Error(st, stanza.Modify, "bad-request", ""))
	case to.Resource() != "":
		reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
	case p.Space == stanza.NSPing:
		reply(stanza.Result(st))
	case p.Space == stanza.NSDiscoInfo && typ == "get" && p.Attr("node") == "":
		reply(discoInfo(st, "server", "im", "Aldis", r.ServerFeatures()))
	case seclabel.IsCatalog(p.Space):
		// Catalogs are for our own users (PROTOCOLS.md §1.8.4).
		reply(stanza.Error(st, stanza.Auth, "not-authorized", ""))
	default:
		reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
	}
}
