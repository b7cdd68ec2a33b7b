package c2s

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Namespaces of XEP-0198 stream management and XEP-0352 client state indication.
const (
	nsSM  = "urn:xmpp:sm:3"
	nsCSI = "urn:xmpp:csi:0"
)

// session is a bound resource as the router sees it (router.Session).
// Without stream management it lives exactly as long as its connection.
// With XEP-0198 resumption it outlives a connection that dropped: it stays
// bound, keeps what is sent to it, and the next connection of the same
// account that presents its id takes it over.
//
// Lock order: session.mu, then conn.mu or Server.mu. Nothing holding either
// of those calls into a session.
type session struct {
	srv  *Server
	user jid.JID // the authenticated bare JID: only it may resume the session

	mu      sync.Mutex
	binding *router.Binding
	c       *conn // the connection to the client; nil while detached
	ended   bool  // unbound for good: Send refuses, resumption fails
	closing bool  // the router ended the session: it must not wait for a resumption
	claimed bool  // a new connection is taking the session over

	// XEP-0198; zero until the client enables it.
	sm         bool
	id         string        // resumption id; empty when not resumable
	resumeFor  time.Duration // how long the session waits for its client
	in         uint32        // stanzas handled from the client, mod 2^32
	q          ackQueue      // stanzas sent and not acknowledged yet
	reqPending bool          // an <r/> is unanswered
	sinceReq   int           // stanzas sent since the last <r/>
	detached   bool          // counted in Server.detached
	expiry     *time.Timer
	gen        uint64 // detachment generation: a stale expiry does nothing

	// XEP-0352.
	inactive bool
	held     []heldStanza
}

// ackQueue holds the stanzas sent to the client that it has not
// acknowledged (XEP-0198 §4); the counters wrap at 2^32.
type ackQueue struct {
	acked uint32 // the client's last h
	items [][]byte
}

// sent is the number of stanzas sent, mod 2^32.
func (q *ackQueue) sent() uint32 { return q.acked + uint32(len(q.items)) }

func (q *ackQueue) push(b []byte) { q.items = append(q.items, b) }

// ack drops the stanzas that h acknowledges. An h that acknowledges more
// than was sent (or goes backwards) is an error, and nothing changes.
func (q *ackQueue) ack(h uint32) error {
	n := h - q.acked
	if uint64(n) > uint64(len(q.items)) {
		return &handledCountErr{h: h, sent: q.sent()}
	}
	k := copy(q.items, q.items[n:])
	clear(q.items[k:])
	q.items = q.items[:k]
	q.acked = h
	return nil
}

// take empties the queue and returns what it held.
func (q *ackQueue) take() [][]byte {
	items := q.items
	q.items = nil
	return items
}

// handledCountErr is the stream error for an h that acknowledges more
// stanzas than were sent (XEP-0198 §4).
type handledCountErr struct{ h, sent uint32 }

func (e *handledCountErr) Error() string {
	return fmt.Sprintf("handled-count-too-high: h %d, %d sent", e.h, e.sent)
}

func (e *handledCountErr) bytes() []byte {
	el := wire.New("stream:error", "")
	el.AddChild(wire.New("undefined-condition", stanza.NSStreamErr))
	x := el.AddChild(wire.New("handled-count-too-high", nsSM))
	x.SetAttr("h", strconv.FormatUint(uint64(e.h), 10))
	x.SetAttr("send-count", strconv.FormatUint(uint64(e.sent), 10))
	return append(el.Append(nil), "</stream:stream>"...)
}

// parseH parses an h attribute, an xs:unsignedInt.
func parseH(s string) (uint32, error) {
	h, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, &streamErr{"bad-format", "h must be an unsignedInt"}
	}
	return uint32(h), nil
}

func smFailed(condition string) []byte {
	f := wire.New("failed", nsSM)
	f.AddChild(wire.New(condition, stanza.NSStanzaErr))
	return f.Append(nil)
}

func ackElement(h uint32) []byte {
	return []byte("<a xmlns='" + nsSM + "' h='" + strconv.FormatUint(uint64(h), 10) + "'/>")
}

var ackRequest = []byte("<r xmlns='" + nsSM + "'/>")

// resumeID returns a resumption id: 144 random bits, so that knowing the
// account is not enough to take a session over.
func resumeID() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Send queues a stanza for the client (router.Session).
func (s *session) Send(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	// While detached (XEP-0198), as while inactive (XEP-0352), presence
	// and chat states wait merged per sender, so a client away for minutes
	// comes back to each contact's latest presence, not to all of them.
	if (s.inactive || s.detached) && s.hold(b) {
		return true
	}
	return s.sendLocked(b)
}

// sendLocked queues a stanza; with stream management it is kept until the
// client acknowledges it, also while detached. Called with s.mu held.
func (s *session) sendLocked(b []byte) bool {
	if !s.sm {
		return s.c != nil && s.c.enqueue(b, false) == queued
	}
	if len(s.q.items) >= s.srv.cfg.SendQueue {
		// A client that never acknowledges must not hold the server's memory.
		s.srv.m.overflows.Inc()
		if s.c != nil {
			s.c.Close("policy-violation", "too many unacknowledged stanzas")
		} else {
			go s.end()
		}
		return false
	}
	if s.c != nil && s.c.enqueue(b, false) == overflowed {
		return false // the connection ends, and the session with it
	}
	// Also when the connection is closing: the stanza is retransmitted on
	// resumption or resent when the session ends.
	s.q.push(b)
	s.sinceReq++
	if s.c != nil && !s.reqPending {
		// Ask right away, in the same write: the client's radio is up now,
		// and one request at a time bounds the traffic to one per round trip.
		s.requestAck()
	}
	return true
}

func (s *session) requestAck() {
	s.reqPending = true
	s.sinceReq = 0
	s.c.enqueue(ackRequest, true)
}

// Close ends the session with a stream error (router.Session).
func (s *session) Close(condition, text string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.closing = true
	c := s.c
	s.mu.Unlock()
	if c != nil {
		c.Close(condition, text)
		return
	}
	// Detached: there is no one to tell.
	s.end()
}

// enable handles <enable/> (XEP-0198 §3) from the session's connection;
// it reports whether stream management is now on.
func (s *session) enable(c *conn, el *wire.Element) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sm || s.c != c {
		c.enqueue(smFailed("unexpected-request"), false)
		return false
	}
	s.sm = true
	e := wire.New("enabled", nsSM)
	if r := el.Attr("resume"); (r == "true" || r == "1") && s.srv.cfg.ResumeTimeout > 0 {
		s.resumeFor = s.srv.cfg.ResumeTimeout
		if m, err := strconv.ParseUint(el.Attr("max"), 10, 32); err == nil && m > 0 {
			s.resumeFor = min(s.resumeFor, time.Duration(m)*time.Second)
		}
		s.id = resumeID()
		s.srv.addResumable(s.id, s)
		e.SetAttr("id", s.id)
		e.SetAttr("resume", "true")
		e.SetAttr("max", strconv.Itoa(int(s.resumeFor/time.Second)))
	}
	// Queued under s.mu: every stanza after it is counted, none before.
	c.enqueue(e.Append(nil), true)
	return true
}

// resume handles <resume/> (XEP-0198 §5), which a client sends instead of
// binding; it reports whether the stream now continues the old session.
func (c *conn) resume(el *wire.Element) (bool, error) {
	refuse := func(condition string) (bool, error) {
		c.srv.m.resumeFailed.Inc()
		return false, c.write(smFailed(condition))
	}
	h, err := parseH(el.Attr("h"))
	if err != nil {
		return refuse("bad-request")
	}
	s := c.srv.lookupResumable(el.Attr("previd"))
	if s == nil || s.user != c.user {
		// Another account's session is as unknown as a made-up id.
		return refuse("item-not-found")
	}
	old, ok := s.claim()
	if !ok {
		return refuse("item-not-found")
	}
	if old != nil {
		// The client saw its old connection die before the server did.
		// Its reader must stop before the count of handled stanzas is final.
		old.replace()
		t := time.NewTimer(time.Until(c.rd.handshake))
		select {
		case <-old.stopped:
			t.Stop()
		case <-t.C:
			s.unclaim()
			return refuse("internal-server-error")
		}
	}
	if err := s.attach(c, h); err != nil {
		if errors.Is(err, errGone) {
			return refuse("item-not-found")
		}
		c.srv.m.resumeFailed.Inc()
		return false, err
	}
	c.sess = s
	c.smIn = true
	c.rd.bound()
	c.srv.m.resumed.Inc()
	c.srv.log.Debug("session resumed", "jid", s.binding.JID().String(), "remote", c.ip)
	return true, nil
}

// handled counts a stanza the client sent (XEP-0198 §4).
func (s *session) handled() {
	s.mu.Lock()
	s.in++
	s.mu.Unlock()
}

// answer replies to the client's <r/>.
func (s *session) answer(c *conn) {
	s.mu.Lock()
	h := s.in
	s.mu.Unlock()
	c.enqueue(ackElement(h), false)
}

// acked handles the client's <a/>.
func (s *session) acked(el *wire.Element) error {
	h, err := parseH(el.Attr("h"))
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.q.ack(h); err != nil {
		return err
	}
	s.reqPending = false
	if len(s.q.items) > 0 && s.sinceReq > 0 && s.c != nil {
		// Stanzas went out after the request. Not asking again for older
		// ones keeps a client that never advances from looping with us.
		s.requestAck()
	}
	return nil
}

// leave is called when connection c ends. A resumable session whose
// connection was lost waits for its client; any other ends.
func (s *session) leave(c *conn, lost bool) {
	s.mu.Lock()
	if s.c != c || s.ended {
		// Taken over by a resumption, or already over.
		s.mu.Unlock()
		return
	}
	s.c = nil
	if !lost || s.id == "" || s.closing || s.srv.stopping.Load() {
		s.mu.Unlock()
		s.end()
		return
	}
	s.reqPending = false
	s.setDetached(true)
	s.armExpiry()
	unacked := len(s.q.items)
	s.mu.Unlock()
	s.srv.log.Debug("session detached", "jid", s.binding.JID().String(), "unacked", unacked)
}

func (s *session) setDetached(d bool) {
	if s.detached != d {
		s.detached = d
		if d {
			s.srv.detached.Add(1)
		} else {
			s.srv.detached.Add(-1)
		}
	}
}

// armExpiry starts the resumption timeout. Called with s.mu held.
func (s *session) armExpiry() {
	s.gen++
	gen := s.gen
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.expiry = time.AfterFunc(s.resumeFor, func() { s.expire(gen) })
}

func (s *session) stopExpiry() {
	s.gen++
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
}

func (s *session) expire(gen uint64) {
	s.mu.Lock()
	stale := gen != s.gen || s.c != nil || s.claimed || s.ended
	s.mu.Unlock()
	if stale {
		return
	}
	s.srv.m.expired.Inc()
	s.srv.log.Debug("session not resumed in time", "jid", s.binding.JID().String())
	s.end()
}

// claim starts a takeover by a resuming connection. It returns the
// connection that had the session, which the caller must stop before the
// session's counters are final.
func (s *session) claim() (old *conn, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closing || s.claimed {
		return nil, false
	}
	s.claimed = true
	s.stopExpiry()
	s.setDetached(false)
	old, s.c = s.c, nil
	return old, true
}

// unclaim gives up a takeover: the session waits for its client again.
func (s *session) unclaim() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimed = false
	if !s.ended {
		s.setDetached(true)
		s.armExpiry()
	}
}

// attach makes c the session's connection after the client acknowledged h
// stanzas (XEP-0198 §5): <resumed/>, then every stanza the client has not
// acknowledged, then whatever CSI held back (a new stream is active).
func (s *session) attach(c *conn, h uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimed = false
	if s.ended || s.closing {
		return errGone
	}
	if err := s.q.ack(h); err != nil {
		s.setDetached(true)
		s.armExpiry()
		return err
	}
	s.c = c
	c.setWritable()
	r := wire.New("resumed", nsSM)
	r.SetAttr("previd", s.id)
	r.SetAttr("h", strconv.FormatUint(uint64(s.in), 10))
	c.enqueue(r.Append(nil), true)
	for _, b := range s.q.items {
		c.enqueue(b, true)
	}
	s.reqPending = false
	if len(s.q.items) > 0 {
		s.requestAck()
	}
	s.inactive = false
	s.flushHeld()
	return nil
}

// end unbinds the session for good and hands what the client never
// acknowledged back to the router. It is idempotent.
func (s *session) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.stopExpiry()
	s.setDetached(false)
	unacked := s.q.take()
	s.held = nil
	b, id := s.binding, s.id
	s.mu.Unlock()
	if b != nil {
		// Unbind first: the hub then no longer offers the resent
		// messages to this session.
		b.Unbind()
	}
	s.resend(unacked)
	if id != "" {
		s.srv.dropResumable(id)
	}
}

// resend treats the stanzas the client never acknowledged as sent to an
// unavailable resource (XEP-0198 §4, RFC 6121 §8.5.3.2): a message goes to
// the account's bare JID, that is to another resource or to offline
// storage; an iq request gets service-unavailable back, so its sender does
// not wait for a timeout. Presence is dropped: it is state, which the
// client gets afresh on its next login. So are iq responses (their
// requester has gone), groupchat messages (the room has them, and the
// room learns the occupant left), errors and carbon copies (the original
// went to its own recipient). Clients that did receive a stanza but did
// not acknowledge it in time get it twice: duplicates are the price of
// losing nothing.
func (s *session) resend(items [][]byte) {
	rt := s.srv.cfg.Router
	for _, b := range items {
		st, err := wire.ParseElement(string(b))
		if err != nil {
			s.srv.log.Error("unacknowledged stanza unreadable", "err", err)
			continue
		}
		switch st.Local() {
		case "message":
			switch st.Attr("type") {
			case "groupchat", "error":
				continue
			}
			if st.Child("received", stanza.NSCarbons) != nil || st.Child("sent", stanza.NSCarbons) != nil {
				continue
			}
			rt.Resend(st)
		case "iq":
			if t := st.Attr("type"); t != "get" && t != "set" {
				continue
			}
			from, err1 := jid.Parse(st.Attr("from"))
			to, err2 := jid.Parse(st.Attr("to"))
			if err1 != nil || err2 != nil {
				continue
			}
			rt.Deliver(stanza.Error(st, stanza.Cancel, "service-unavailable", ""), to, from)
		default:
			continue
		}
		s.srv.m.resent.Inc()
	}
}
