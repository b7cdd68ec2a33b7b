package router

import (
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// blockingIQ implements XEP-0191.
func (h *hub) blockingIQ(s *sess, st, p *wire.Element, typ string) {
	user := h.bare.String()
	switch {
	case typ == "get" && p.Local() == "blocklist":
		l, err := h.r.cfg.Store.BlockList(h.ctx, user)
		if err != nil {
			h.reply(s, stanza.Error(st, stanza.Wait, "internal-server-error", ""))
			return
		}
		s.blockInterested = true
		res := stanza.Result(st)
		bl := res.AddChild(wire.New("blocklist", stanza.NSBlocking))
		for _, j := range l {
			bl.AddChild(wire.New("item", "")).SetAttr("jid", j)
		}
		h.reply(s, res)
	case typ == "set" && (p.Local() == "block" || p.Local() == "unblock"):
		var jids []string
		var parsed []jid.JID
		for it := range p.Elements() {
			if it.Local() != "item" {
				continue
			}
			j, err := jid.Parse(it.Attr("jid"))
			if err != nil {
				h.reply(s, stanza.Error(st, stanza.Modify, "jid-malformed", ""))
				return
			}
			jids = append(jids, j.String())
			parsed = append(parsed, j)
		}
		var err error
		if p.Local() == "block" {
			if len(jids) == 0 {
				h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", "block needs at least one item"))
				return
			}
			for _, j := range parsed {
				if !h.blocks(j) {
					// The blocked entity sees the user go offline.
					h.presenceTo(j, true)
				}
			}
			err = h.r.cfg.Store.Block(h.ctx, user, jids)
		} else {
			err = h.r.cfg.Store.Unblock(h.ctx, user, jids)
		}
		if err != nil {
			h.r.log.Error("update blocklist", "user", user, "err", err)
			h.reply(s, stanza.Error(st, stanza.Wait, "internal-server-error", ""))
			return
		}
		l, err := h.r.cfg.Store.BlockList(h.ctx, user)
		if err != nil {
			h.r.log.Error("read blocklist", "user", user, "err", err)
		}
		h.publishBlocks(l)
		h.reply(s, stanza.Result(st))
		push := wire.New("iq", "")
		push.SetAttr("type", "set")
		push.SetAttr("id", "push-"+randomID())
		c := push.AddChild(wire.New(p.Local(), stanza.NSBlocking))
		for _, j := range jids {
			c.AddChild(wire.New("item", "")).SetAttr("jid", j)
		}
		b := push.Append(nil)
		for _, o := range h.sessions {
			if o.blockInterested {
				h.send(o, b)
			}
		}
	default:
		h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", ""))
	}
}
