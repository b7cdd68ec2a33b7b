package mam

import (
	"context"
	"errors"
	"slices"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Eligible reports whether a message is archived (XEP-0313 §7.1): type chat,
// or normal with a <body/>; not error, groupchat or headline; not with a
// <no-store/> or <no-permanent-store/> hint (XEP-0334).
func Eligible(st *wire.Element) bool {
	if st == nil || st.Local() != "message" {
		return false
	}
	switch st.Attr("type") {
	case "chat", "", "normal":
		// Only what people wrote (XEP-0313 §7.1): chat states and receipts
		// without a body would bury the conversation.
		if st.Child("body", "") == nil {
			return false
		}
	default:
		return false
	}
	return st.Child("no-store", nsHints) == nil && st.Child("no-permanent-store", nsHints) == nil
}

// prefs are a user's archiving preferences (XEP-0313 §6).
type prefs struct {
	def    string   // "always", "never" or "roster"
	always []string // bare JIDs, sorted
	never  []string
}

var defaultPrefs = prefs{def: "always"}

// wanted applies owner's preferences to a message exchanged with with. A
// failure to read them archives: losing history is worse than keeping it.
func (a *Archiver) wanted(owner, with jid.JID) bool {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	p := a.loadPrefs(ctx, owner)
	w := with.String()
	if _, ok := slices.BinarySearch(p.never, w); ok {
		return false
	}
	if _, ok := slices.BinarySearch(p.always, w); ok {
		return true
	}
	switch p.def {
	case "never":
		return false
	case "roster":
		_, err := a.st.RosterItem(ctx, owner.String(), w)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("archive preferences: roster lookup failed", "user", owner, "err", err)
		}
		return !errors.Is(err, store.ErrNotFound)
	}
	return true
}

// loadPrefs returns owner's preferences, from the cache when it has them.
func (a *Archiver) loadPrefs(ctx context.Context, owner jid.JID) *prefs {
	key := owner.String()
	a.prefsMu.Lock()
	p := a.prefs[key]
	a.prefsMu.Unlock()
	if p != nil {
		return p
	}
	p = &defaultPrefs
	x, err := a.st.GetXML(ctx, key, prefsKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		a.log.Warn("archive preferences: read failed", "user", key, "err", err)
		return p // not cached: try again next time
	default:
		if el, err := wire.ParseElement(x); err != nil {
			a.log.Warn("archive preferences: stored XML unreadable", "user", key, "err", err)
		} else if q, err := parsePrefs(el); err == nil {
			p = q
		}
	}
	a.cachePrefs(key, p, false)
	return p
}

// cachePrefs remembers p for key. A load does not replace an entry (a set
// may have raced ahead of it with newer preferences); a set does.
func (a *Archiver) cachePrefs(key string, p *prefs, replace bool) {
	a.prefsMu.Lock()
	defer a.prefsMu.Unlock()
	if _, ok := a.prefs[key]; ok && !replace {
		return
	}
	if len(a.prefs) >= prefsCacheMax {
		clear(a.prefs) // crude, but bounded; a miss costs one indexed read
	}
	a.prefs[key] = p
}

// parsePrefs reads a <prefs/> element; it errs on what a client must not send.
func parsePrefs(el *wire.Element) (*prefs, error) {
	p := &prefs{def: el.Attr("default")}
	switch p.def {
	case "always", "never", "roster":
	default:
		return nil, errors.New("bad default")
	}
	for c := range el.Elements() {
		var dst *[]string
		switch {
		case c.Local() == "always":
			dst = &p.always
		case c.Local() == "never":
			dst = &p.never
		default:
			continue
		}
		for j := range c.Elements() {
			if j.Local() != "jid" {
				continue
			}
			// Archives are kept by bare JID, so preferences are too.
			v, err := jid.Parse(j.Text())
			if err != nil {
				return nil, errors.New("bad jid")
			}
			*dst = append(*dst, v.Bare().String())
		}
	}
	for _, l := range []*[]string{&p.always, &p.never} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return p, nil
}

// element renders p as <prefs/>.
func (p *prefs) element() *wire.Element {
	el := wire.New("prefs", NS)
	el.SetAttr("default", p.def)
	for _, l := range []struct {
		name string
		jids []string
	}{{"always", p.always}, {"never", p.never}} {
		c := el.AddChild(wire.New(l.name, ""))
		for _, j := range l.jids {
			c.AddChild(wire.New("jid", "")).AddText(j)
		}
	}
	return el
}

// prefsIQ answers a prefs get or set.
func (a *Archiver) prefsIQ(ctx context.Context, owner jid.JID, st, p *wire.Element, send func(*wire.Element)) {
	var cur *prefs
	if st.Attr("type") == "set" {
		np, err := parsePrefs(p)
		if err != nil {
			send(stanza.Error(st, stanza.Modify, "bad-request", err.Error()))
			return
		}
		if err := a.st.PutXML(ctx, owner.String(), prefsKey, np.element().String()); err != nil {
			a.log.Error("archive preferences: write failed", "user", owner, "err", err)
			send(stanza.Error(st, stanza.Wait, "internal-server-error", ""))
			return
		}
		a.cachePrefs(owner.String(), np, true)
		cur = np
	} else {
		cur = a.loadPrefs(ctx, owner)
	}
	res := stanza.Result(st)
	res.AddChild(cur.element())
	send(res)
}
