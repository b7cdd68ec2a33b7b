package relay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// runIntake commits the stanzas Send takes, a batch per transaction,
// until ctx ends; then it commits what is left and refuses more.
func (l *Link) runIntake(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.stopped = true
			l.mu.Unlock()
			// Send no longer adds to the intake: empty it into the store.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			for {
				batch := l.takeBatch(nil)
				if len(batch) == 0 {
					return
				}
				l.commit(dctx, nil, batch)
			}
		case c := <-l.intake:
			// A stanza taken from the intake is committed even if the
			// link stops meanwhile.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			l.commit(cctx, ctx.Done(), l.takeBatch([]outStanza{c}))
			cancel()
		}
	}
}

// takeBatch adds to batch what the intake holds, up to intakeBatch.
func (l *Link) takeBatch(batch []outStanza) []outStanza {
	for len(batch) < intakeBatch {
		select {
		case c := <-l.intake:
			batch = append(batch, c)
		default:
			return batch
		}
	}
	return batch
}

// commit applies the policy to a batch and adds what must cross to the
// outbound queue; folded presence goes to the link's goroutine unless
// fold is nil or closed (the link is stopping, and presence is not
// durable).
func (l *Link) commit(ctx context.Context, fold <-chan struct{}, batch []outStanza) {
	now := l.cfg.Now()
	items := make([]queue.Item, 0, len(batch))
	sources := make([]outStanza, 0, len(batch))
	for _, c := range batch {
		it, ok := l.prepare(c, now)
		if !ok {
			continue
		}
		if it.Meta == nil { // folded presence
			if fold != nil {
				w := &waiter{item: &Item{ID: newID(), Class: brlink.ClassXMPP, Precedence: brlink.Deferred, Payload: it.Payload}, foldKey: it.Key}
				select {
				case l.fold <- w:
					l.m.folded.Inc()
				case <-fold:
				}
			}
			continue
		}
		items = append(items, it)
		sources = append(sources, c)
	}
	if len(items) == 0 {
		return
	}
	_, err := l.out.Add(ctx, items...)
	if err == nil {
		return
	}
	l.log.Warn("committing a batch failed; trying its stanzas one by one", "items", len(items), "err", err)
	for i, it := range items {
		if _, err := l.out.Add(ctx, it); err != nil {
			l.log.Error("cannot queue a stanza", "from", sources[i].from.String(), "to", sources[i].to.String(), "err", err)
			l.bounce(sources[i].st, sources[i].from, sources[i].to, stanza.Wait, "internal-server-error")
		}
	}
}

// prepare checks a stanza and builds its queue item. A folded presence
// comes back with nil Meta and its fold key in Key. ok is false for a
// stanza that does not cross (bounced or dropped).
func (l *Link) prepare(c outStanza, now time.Time) (queue.Item, bool) {
	st, from, to := c.st, c.from, c.to
	switch {
	case !l.local[from.Domain()]:
		l.m.dropped.Inc()
		l.log.Warn("refusing a stanza from a domain not served here", "from", from.String())
		return queue.Item{}, false
	case !l.peer[to.Domain()]:
		l.bounce(st, from, to, stanza.Cancel, "remote-server-not-found")
		return queue.Item{}, false
	}
	if l.cfg.Allowed != nil && !l.cfg.Allowed(st) {
		l.log.Info("link not cleared for a stanza: refused", "from", from.String(), "to", to.String())
		l.m.forbidden.Inc()
		l.bounce(st, from, to, stanza.Auth, "forbidden")
		return queue.Item{}, false
	}
	st.SetAttr("from", from.String())
	st.SetAttr("to", to.String())
	d := l.pol.apply(st)
	switch d.verdict {
	case dropIt:
		l.m.dropped.Inc()
		l.log.Debug("not sent over the link", "why", d.why, "from", from.String(), "to", to.String())
		return queue.Item{}, false
	case foldIt:
		return queue.Item{Key: foldKey(st), Payload: stanza.AppendForPeer(nil, st)}, true
	}
	ttl := l.cfg.ChatTTL
	if d.class == brlink.ClassFMUC || st.Attr("type") == "groupchat" {
		ttl = l.cfg.GroupchatTTL
	}
	id := newID()
	return queue.Item{
		Key:      hex.EncodeToString(id[:]),
		Dest:     l.cfg.Name,
		Priority: int(d.precedence),
		Expires:  now.Add(ttl),
		Meta:     map[string]string{"class": className(d.class), "from": from.String(), "to": to.String()},
		Payload:  stanza.AppendForPeer(nil, st),
	}, true
}

// itemOf rebuilds the bearer item of a queued item.
func itemOf(qi queue.Item) (*Item, error) {
	var id brlink.ID
	b, err := hex.DecodeString(qi.Key)
	if err != nil || len(b) != len(id) {
		return nil, fmt.Errorf("relay: queued item %d has a bad key %q", qi.ID, qi.Key)
	}
	copy(id[:], b)
	class, ok := parseClass(qi.Meta["class"])
	if !ok {
		return nil, fmt.Errorf("relay: queued item %d has a bad class %q", qi.ID, qi.Meta["class"])
	}
	return &Item{
		ID:         id,
		Class:      class,
		Precedence: brlink.Precedence(min(max(qi.Priority, 0), int(brlink.Override))),
		Expires:    qi.Expires,
		Payload:    qi.Payload,
	}, nil
}

// deliverOut is the outbound queue's Deliver: it holds the item's claim
// until the far side acknowledges it, through any number of outages, or
// until it expires. The link's goroutine hands it to the bearer.
func (l *Link) deliverOut(ctx context.Context, qi queue.Item) error {
	if !qi.Expires.IsZero() && !l.cfg.Now().Before(qi.Expires) {
		return queue.Permanent(ErrExpired)
	}
	it, err := itemOf(qi)
	if err != nil {
		return queue.Permanent(err)
	}
	w := &waiter{item: it, qid: qi.ID, done: make(chan error, 1)}
	select {
	case l.register <- w:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.loopDone:
		return errors.New("relay: link stopped")
	}
	var expire <-chan time.Time
	if !it.Expires.IsZero() {
		t := time.NewTimer(it.Expires.Sub(l.cfg.Now()))
		defer t.Stop()
		expire = t.C
	}
	var cause error
	select {
	case err := <-w.done:
		return err
	case <-expire:
		cause = queue.Permanent(ErrExpired)
	case <-ctx.Done():
		cause = ctx.Err()
	}
	select {
	case l.unregister <- w:
	case <-l.loopDone:
	}
	// An acknowledgement that came in meanwhile wins.
	select {
	case err := <-w.done:
		return err
	default:
		return cause
	}
}

// failedOut is the outbound queue's Failed: the one non-delivery report
// of an item that expired or was refused.
func (l *Link) failedOut(ctx context.Context, qi queue.Item, cause error) ([]queue.Item, error) {
	if errors.Is(cause, ErrExpired) {
		l.m.expired.Inc()
	} else {
		l.m.failed.Inc()
	}
	if qi.Meta["class"] == className(brlink.ClassEmail) {
		env, msg, err := parseMail(qi.Payload)
		if err != nil {
			l.log.Error("a failed mail cannot be reported: its payload is damaged", "id", qi.ID, "err", err)
			return nil, nil
		}
		if err := l.cfg.MailFailed(ctx, env, msg, cause); err != nil {
			return nil, fmt.Errorf("relay: reporting a failed mail: %w", err)
		}
		return nil, nil
	}
	st, err := wire.ParseElement(string(qi.Payload))
	if err != nil {
		l.log.Error("a failed stanza cannot be reported: its payload is damaged", "id", qi.ID, "err", err)
		return nil, nil
	}
	from, err1 := jid.Parse(qi.Meta["from"])
	to, err2 := jid.Parse(qi.Meta["to"])
	if err1 != nil || err2 != nil {
		l.log.Error("a failed stanza cannot be reported: bad addresses", "id", qi.ID)
		return nil, nil
	}
	typ, cond := stanza.Wait, "remote-server-timeout"
	switch {
	case errors.Is(cause, ErrForbidden):
		typ, cond = stanza.Auth, "forbidden"
	case errors.Is(cause, ErrTooLarge):
		typ, cond = stanza.Modify, "policy-violation"
	}
	l.log.Info("stanza not delivered over the link", "from", from.String(), "to", to.String(),
		"kind", st.Local(), "cause", strings.TrimPrefix(cause.Error(), "relay: "))
	l.bounce(st, from, to, typ, cond)
	return nil, nil
}
