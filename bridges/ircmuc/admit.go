package ircmuc

import (
	"errors"
	"slices"
	"time"

	"github.com/aldis-im/aldis/core/pool"
	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/irc/format"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// nsGateway is the room's question "may this user join?" (xmppcore/muc
// NSGateway): aldis's chat service asks its gateway before it admits a new
// occupant to a linked room, so that the user is in the room only once the
// channel let them in (PROTOCOLS §7.4), and an IRC refusal is their join's
// error. Another server's MUC does not ask; then the refusal reaches the
// user in a private message (cutOff).
const nsGateway = "urn:aldis:muc:gateway:0"

// admitTTL bounds how long an admitted user's connection waits for the room's presence of them
// (the room may still refuse the join for a reason of its own).
const admitTTL = time.Minute

// admission is an XMPP user the room asked about: their connection joins the channel, and the
// answer waits for the outcome.
type admission struct {
	o        *occupant
	room     jid.JID // who asked, and the question's id
	id       string
	answered time.Time // zero until answered
}

// admit takes the room's question about a join: the user's connection is dialled (or found in
// the pool) and joins the channel; the answer follows the channel's verdict.
func (n *network) admit(l *link, st *wire.Element, from jid.JID) {
	if q := st.Child("subject", nsGateway); q != nil && st.Attr("type") == "set" {
		n.askTopic(l, st, from, q)
		return
	}
	q := st.Child("join", nsGateway)
	if q == nil || st.Attr("type") != "set" {
		n.b.refuse(st, from, n.b.self, stanza.Cancel, "service-unavailable")
		return
	}
	nick := q.Attr("nick")
	real, err := jid.Parse(q.Attr("jid"))
	if nick == "" || err != nil {
		n.b.send(stanza.Error(st, stanza.Modify, "bad-request", "a nick and a jid are required"), n.b.self, from)
		return
	}
	if n.cfg.RelayOnly || l.occupant[nick] != nil {
		n.b.send(stanza.Result(st), n.b.self, from)
		return
	}
	if old := l.admitting[nick]; old != nil {
		n.release(l, old.o)
	}
	o := &occupant{nick: nick, key: userKey{User: real.Bare().String(), Network: n.cfg.Name}}
	l.admitting[nick] = &admission{o: o, room: from, id: st.Attr("id")}
	n.connect(l, o)
}

// answerAdmission tells the room its verdict on a: admitted (cond ""), or refused with the
// XEP-0045 condition for the IRC refusal.
func (n *network) answerAdmission(a *admission, typ, cond, text string) {
	if !a.answered.IsZero() {
		return
	}
	a.answered = time.Now()
	n.answerRoom(a.room, a.id, typ, cond, text)
}

// answerRoom answers the room's question id: a result (cond ""), or an error.
func (n *network) answerRoom(room jid.JID, id, typ, cond, text string) {
	q := wire.New("iq", "")
	q.SetAttr("type", "set").SetAttr("id", id)
	if cond == "" {
		n.b.send(stanza.Result(q), n.b.self, room)
		return
	}
	n.b.send(stanza.Error(q, typ, cond, text), n.b.self, room)
}

// admissionOf finds the admission of occupant o in l.
func (l *link) admissionOf(o *occupant) *admission {
	if a := l.admitting[o.nick]; a != nil && a.o == o {
		return a
	}
	return nil
}

// admissionLeased follows the pool's answer for an admission: no connection beyond the
// budget means the relay (admitted); a network that cannot be reached refuses the join.
func (n *network) admissionLeased(l *link, a *admission, err error) {
	if errors.Is(err, pool.ErrExhausted) {
		n.answerAdmission(a, "", "", "")
		return
	}
	n.answerAdmission(a, stanza.Cancel, "remote-server-not-found", "The IRC network cannot be reached.")
	delete(l.admitting, a.o.nick)
}

// admittedOnIRC follows the channel's JOIN of c: the admissions waiting for it are admitted.
func (n *network) admittedOnIRC(c *userConn, m irc.Message) {
	l := n.chans[foldChannel(irc.Param(&m, 0))]
	if l == nil {
		return
	}
	for _, a := range l.admitting {
		if a.o.conn == c {
			n.answerAdmission(a, "", "", "")
		}
	}
}

// admissionRefused follows the channel refusing c's JOIN for an admission (PROTOCOLS §7.4's
// table): the room refuses the join with it. It reports whether c was an admission's.
func (n *network) admissionRefused(l *link, c *userConn, code string) bool {
	found := false
	for _, a := range l.admitting {
		if a.o.conn != c {
			continue
		}
		found = true
		typ, cond := stanza.Cancel, "remote-server-not-found"
		switch code {
		case "471":
			typ, cond = stanza.Wait, "service-unavailable"
		case "473":
			typ, cond = stanza.Auth, "registration-required"
		case "474":
			typ, cond = stanza.Auth, "forbidden"
		case "475":
			typ, cond = stanza.Auth, "not-authorized"
		}
		n.release(l, a.o)
		a.o.refused = code
		// Kept, refused, until it expires: should the room have stopped waiting and admitted
		// the user, their presence finds the refusal and they get the private message.
		n.answerAdmission(a, typ, cond, "IRC refused the join of "+l.cfg.Channel+" ("+code+": "+joinError(code)+").")
	}
	return found
}

// expireAdmissions lets go of admitted users the room never showed (it refused them for a
// reason of its own).
func (n *network) expireAdmissions(l *link) {
	for nick, a := range l.admitting {
		if !a.answered.IsZero() && time.Since(a.answered) > admitTTL {
			n.release(l, a.o)
			delete(l.admitting, nick)
		}
	}
}

// topicChange is a subject change by an occupant (nick) to text.
type topicChange struct{ nick, text string }

// topicAsk is the room's question about a subject change: the channel's topic is being set on
// conn (nil: the listener).
type topicAsk struct {
	conn  *userConn
	nick  string // the occupant changing it
	text  string
	room  jid.JID
	id    string
	asked time.Time
}

// askTopic takes the room's question whether an occupant may change the subject: TOPIC goes out
// on their own connection (on the listener for those without one), and the answer follows IRC's:
// the topic set, or 482 (not a channel operator: forbidden, and the room keeps its subject).
func (n *network) askTopic(l *link, st *wire.Element, from jid.JID, q *wire.Element) {
	nick, text := q.Attr("nick"), q.Text()
	subj := wire.New("message", "")
	subj.AddChild(wire.New("subject", "")).AddText(text)
	if _, ok := n.egress(l.clr, subj, l.cfg.Room); !ok || format.ToIRC(text) == l.topic {
		n.b.send(stanza.Result(st), n.b.self, from) // nothing to set on IRC
		return
	}
	a := &topicAsk{nick: nick, text: text, room: from, id: st.Attr("id"), asked: time.Now()}
	c := n.listener
	if o := l.occupant[nick]; o != nil && o.conn != nil {
		a.conn, c = o.conn, o.conn.c
	}
	if err := c.Topic(l.cfg.Channel, format.ToIRC(text)); err != nil {
		n.b.send(stanza.Error(st, stanza.Wait, "remote-server-timeout", "The IRC network cannot be reached."), n.b.self, from)
		return
	}
	l.topicAsks = append(l.topicAsks, a)
}

// topicAnswered follows IRC's verdict on a TOPIC sent on conn (nil: the listener): the first
// question waiting for it is answered, admitted (cond "") or refused.
func (n *network) topicAnswered(l *link, conn *userConn, cond string) {
	for i, a := range l.topicAsks {
		if a.conn != conn {
			continue
		}
		l.topicAsks = slices.Delete(l.topicAsks, i, i+1)
		if cond == "" {
			// The room broadcasts the change next; it is on IRC already.
			l.topicSet = append(l.topicSet, topicChange{a.nick, a.text})
		}
		n.answerRoom(a.room, a.id, stanza.Auth, cond, "IRC refused the topic of "+l.cfg.Channel+": not a channel operator (482).")
		return
	}
}

// expireTopicAsks forgets questions IRC never answered (the room went ahead after its timeout).
func (n *network) expireTopicAsks(l *link) {
	l.topicAsks = slices.DeleteFunc(l.topicAsks, func(a *topicAsk) bool { return time.Since(a.asked) > admitTTL })
	if len(l.topicSet) > 16 {
		l.topicSet = l.topicSet[len(l.topicSet)-16:]
	}
}

// topicAlreadySet reports (once) whether the room's subject change by nick to text was set on
// IRC as the answer to the room's question.
func (l *link) topicAlreadySet(nick, text string) bool {
	i := slices.Index(l.topicSet, topicChange{nick, text})
	if i < 0 {
		return false
	}
	l.topicSet = slices.Delete(l.topicSet, i, i+1)
	return true
}
