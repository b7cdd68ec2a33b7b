package router

import (
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// catalog answers a label catalog request (XEP-0258 §Catalog), which a
// client always sends to its own server naming the target in <catalog to>.
// For the server or a local user it lists the catalog items the requester
// is cleared for; for a room the MUC service answers the server, which
// relays the room's catalog.
func (r *Router) catalog(b *Binding, st, req *wire.Element) {
	g := r.cfg.Labels
	switch {
	case g == nil:
		b.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", "security labels are not configured"))
		return
	case st.Attr("type") != "get":
		b.reply(stanza.Error(st, stanza.Modify, "bad-request", ""))
		return
	}
	// Some clients (slixmpp 1.8) name no target: the catalog is then the
	// server's own, the entity the iq was sent to.
	to := req.Attr("to")
	if to == "" {
		to = b.jid.Domain()
	}
	target, err := jid.Parse(to)
	if err != nil {
		b.reply(stanza.Error(st, stanza.Modify, "bad-request", "the catalog needs a valid to"))
		return
	}
	user := b.jid.Bare()
	switch {
	case r.isHost(target.Domain()):
		c := g.UserClearance(r.ctx, user.String())
		p := g.Policies().Governing
		if c != nil {
			p = c.Policy
		}
		items := seclabel.CatalogItems(p, func(l *label.Label) bool { return label.Decide(c, l) })
		res, err := seclabel.CatalogReply(st, req, target.String(), p, items)
		if err != nil {
			r.log.Error("build label catalog", "err", err)
			b.reply(stanza.Error(st, stanza.Wait, "internal-server-error", ""))
			return
		}
		b.reply(res)
	case r.services[target.Domain()] != nil:
		// Ask the service in the server-to-server form: from names the user.
		q := wire.New("catalog", req.Space)
		q.SetAttr("to", target.String())
		q.SetAttr("from", user.String())
		r.query(r.hostOf(target.Domain()), target.Bare(), q, func(ans *wire.Element) {
			var res *wire.Element
			switch {
			case ans == nil:
				res = stanza.Error(st, stanza.Wait, "remote-server-timeout", "")
			case ans.Attr("type") == "result":
				res = stanza.Result(st)
				for c := range ans.Elements() {
					res.AddChild(c)
				}
			default:
				res = stanza.Error(st, stanza.Cancel, "item-not-found", "")
				if er := ans.Child("error", ""); er != nil {
					res.RemoveChildren("error", "")
					res.AddChild(er)
				}
			}
			b.sess.Send(res.Append(nil))
		})
	default:
		b.reply(stanza.Error(st, stanza.Cancel, "item-not-found", ""))
	}
}
