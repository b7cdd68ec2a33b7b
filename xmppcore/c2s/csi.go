package c2s

import (
	"bytes"

	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// XEP-0352 client state indication. While a client says it is inactive
// (a phone in a pocket), stanzas that only update state wait, so that the
// device's radio is not woken for them:
//
//   - presence broadcasts (available and unavailable), keeping only the
//     latest from each sender;
//   - messages that carry nothing but a chat state (XEP-0085), keeping
//     only the latest from each sender.
//
// Everything else (messages with content, subscription requests, iqs, a
// room's presence about the user's own join) goes out at once, preceded by
// whatever was held, so that the client sees each sender's stanzas in
// order: a "composing" never arrives after the message it announced. The
// device is awake for that stanza anyway. <active/> sends what was held.
// At most maxHeld stanzas wait; a fuller buffer is sent.

const (
	nsChatStates = "http://jabber.org/protocol/chatstates"
	nsMUCUser    = "http://jabber.org/protocol/muc#user"
	maxHeld      = 256
)

type heldStanza struct {
	key string // kind and sender: a newer stanza with the same key replaces it
	b   []byte
}

// hold keeps b back if it can wait; it reports whether it did. Called with
// s.mu held while the client is inactive.
func (s *session) hold(b []byte) bool {
	key, ok := holdKey(b)
	if ok {
		for i := range s.held {
			if s.held[i].key == key {
				s.held[i].b = b
				return true
			}
		}
		if len(s.held) < maxHeld {
			s.held = append(s.held, heldStanza{key, b})
			return true
		}
	}
	s.flushHeld()
	return false
}

// flushHeld sends what was held. Called with s.mu held.
func (s *session) flushHeld() {
	held := s.held
	s.held = nil
	for _, h := range held {
		s.sendLocked(h.b)
	}
}

// holdKey classifies a serialised stanza: it can wait when it is a
// presence broadcast or a chat-state-only message; key names its kind and
// sender. Only stanzas that may wait are parsed.
func holdKey(b []byte) (key string, ok bool) {
	switch {
	case bytes.HasPrefix(b, []byte("<presence")):
		st, err := wire.ParseElement(string(b))
		if err != nil || st.Local() != "presence" {
			return "", false
		}
		if t := st.Attr("type"); t != "" && t != "unavailable" {
			return "", false // subscriptions, probes and errors matter
		}
		if x := st.Child("x", nsMUCUser); x != nil {
			for c := range x.Elements() {
				if c.Local() == "status" && c.Attr("code") == "110" {
					return "", false // the user's own join or leave
				}
			}
		}
		return "p" + st.Attr("from"), true
	case bytes.HasPrefix(b, []byte("<message")) && bytes.Contains(b, []byte(nsChatStates)):
		st, err := wire.ParseElement(string(b))
		if err != nil || st.Local() != "message" || st.Attr("type") == "error" {
			return "", false
		}
		state := false
		for c := range st.Elements() {
			switch {
			case c.Space == nsChatStates:
				state = true
			case c.Space == stanza.NSHints, c.Local() == "thread" && c.Space == stanza.NSClient:
			default:
				return "", false // a body or any other payload
			}
		}
		return "c" + st.Attr("from"), state
	}
	return "", false
}

// setInactive applies <inactive/> or <active/>.
func (s *session) setInactive(inactive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inactive = inactive
	if !inactive {
		s.flushHeld()
	}
}
