package relay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// runReceiver commits what the far side sends to the inbound queue and
// acknowledges it, until ctx ends.
func (l *Link) runReceiver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-l.received:
			l.receive(ctx, e)
		}
	}
}

// receive commits one received item, then acknowledges it: the far side
// retires its copy only once ours is durable. A copy we already have is
// refused by its key, and acknowledged all the same.
func (l *Link) receive(ctx context.Context, e Event) {
	it := e.Item
	if it == nil {
		return
	}
	var key string
	if it.ID == (brlink.ID{}) {
		// The bearer cannot tell copies apart: nothing to deduplicate on.
		id := newID()
		key = "nodedup-" + hex.EncodeToString(id[:])
	} else {
		key = hex.EncodeToString(it.ID[:])
	}
	switch it.Class {
	case brlink.ClassXMPP, brlink.ClassFMUC, brlink.ClassEmail:
		qi := queue.Item{
			Key:      key,
			Dest:     inDest(it.Class),
			Priority: int(it.Precedence),
			// The sender's expiry bounds the transit; here the item only
			// waits for the local side, which may be slow for mail.
			Expires: l.cfg.Now().Add(l.maxTTL),
			Meta:    map[string]string{"class": className(it.Class)},
			Payload: it.Payload,
		}
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			_, err := l.in.Add(ctx, qi)
			if err == nil {
				l.m.received.Inc()
				break
			}
			if errors.Is(err, store.ErrExists) {
				l.m.duplicates.Inc()
				l.log.Debug("duplicate item from the far side", "id", key)
				break
			}
			if ctx.Err() != nil {
				return // not acknowledged: the far side sends it again
			}
			l.log.Warn("cannot commit a received item; retrying", "err", err, "in", wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	default:
		l.log.Info("ignoring a received item of class ctl", "id", key)
	}
	if e.Ack != nil {
		e.Ack()
	}
}

func inDest(c brlink.Class) string {
	if c == brlink.ClassEmail {
		return "email"
	}
	return "xmpp"
}

// deliverIn is the inbound queue's Deliver: it routes a stanza, if its
// addresses are the link's to use, or hands a mail to the MTA.
func (l *Link) deliverIn(ctx context.Context, qi queue.Item) error {
	class, _ := parseClass(qi.Meta["class"])
	if class == brlink.ClassEmail {
		env, msg, err := parseMail(qi.Payload)
		if err != nil {
			l.log.Warn("dropping a received mail", "err", err)
			return nil
		}
		if l.cfg.Mail == nil {
			l.log.Warn("dropping a received mail: this link does not take mail", "from", env.From)
			return nil
		}
		if err := l.cfg.Mail(ctx, env, msg); err != nil {
			return fmt.Errorf("relay: handing a received mail over: %w", err)
		}
		l.m.delivered.Inc()
		return nil
	}
	st, err := wire.ParseElement(string(qi.Payload))
	if err != nil {
		l.log.Warn("dropping a received stanza that does not parse", "err", err)
		return nil
	}
	switch st.Local() {
	case "message", "presence", "iq":
	default:
		l.log.Warn("dropping a received element that is not a stanza", "name", st.Name)
		return nil
	}
	from, err1 := jid.Parse(st.Attr("from"))
	to, err2 := jid.Parse(st.Attr("to"))
	if err1 != nil || err2 != nil || !l.peer[from.Domain()] || !l.local[to.Domain()] {
		// The far side may speak only for its own domains, to ours.
		l.m.spoofed.Inc()
		l.log.Warn("dropping a received stanza with addresses the link does not carry",
			"from", st.Attr("from"), "to", st.Attr("to"))
		return nil
	}
	l.m.delivered.Inc()
	l.cfg.Inject(st, from, to)
	return nil
}
