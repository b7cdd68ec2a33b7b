package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
)

// Sessions are logged-in sessions for a scenario built outside this
// package, such as the IRC gateway benchmark (irc/ircbench): they join a
// room, send to it and hand every message they receive to a callback. They
// are the same client as Run's, so every scenario speaks XMPP the same way.
type Sessions struct {
	r    *runner
	list []*session
	seq  atomic.Uint64 // message ids
}

// Received is a <message/> a session received. Its fields alias the
// session's read buffer: they are still XML-escaped, and valid only during
// the callback.
type Received struct {
	Session int    // index of the receiving session, 0 … Len()−1
	From    []byte // the from attribute
	Type    []byte // the type attribute: "groupchat", "error", …
	Body    []byte // the text of the first <body/>; nil without one
}

// Login opens cfg.Users sessions as accounts 0 … Users−1, cfg.Concurrency
// at a time, and fails unless every one logs in. onMessage, when not nil,
// is called for every message a session receives, on that session's reader
// goroutine: it must be quick and safe for concurrent use.
func Login(ctx context.Context, cfg Config, onMessage func(Received)) (*Sessions, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := newRunner(cfg)
	r.recv = onMessage
	var res Result
	list, err := r.loginRange(ctx, 0, cfg.Users, &res)
	s := &Sessions{r: r, list: list}
	if err := ctx.Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("loadgen: logins: %w", err)
	}
	if len(list) < cfg.Users {
		s.Close()
		return nil, fmt.Errorf("loadgen: %d of %d logins failed, first: %w", cfg.Users-len(list), cfg.Users, err)
	}
	return s, nil
}

// Len is the number of sessions.
func (s *Sessions) Len() int { return len(s.list) }

// JoinRoom joins every session to room (a bare JID) with its account name
// as nick, the first one alone so that it creates the room if there is
// none (unlocking it as an instant room if the service asks), and waits
// for every self-presence. It fails unless every session joined.
func (s *Sessions) JoinRoom(ctx context.Context, room string) (RoomSet, error) {
	set, _, err := s.r.joinRooms(ctx, "room "+room, len(s.list), []string{room}, [][]*session{s.list})
	if err != nil {
		return set, err
	}
	if set.NotJoined > 0 {
		first := ""
		for _, x := range s.list {
			if m := x.muc.Load(); m != nil && (!m.completed() || !m.joined) {
				first = x.user + ": " + joinErr(m)
				break
			}
		}
		return set, fmt.Errorf("loadgen: %d of %d sessions did not join %s (%s)", set.NotJoined, set.Sessions, room, first)
	}
	return set, nil
}

// Nick is the nick session i has in its room, as the room reported it in
// the self-presence; "" before JoinRoom.
func (s *Sessions) Nick(i int) string {
	m := s.list[i].muc.Load()
	if m == nil || !m.completed() || !m.joined {
		return ""
	}
	return string(bytes.TrimPrefix(m.self, m.prefix))
}

// SendToRoom queues a groupchat message with a plain-text body to session
// i's room; the session's writer sends it (together with whatever else is
// queued by then).
func (s *Sessions) SendToRoom(i int, body string) error {
	x := s.list[i]
	m := x.muc.Load()
	if m == nil || !m.completed() || !m.joined {
		return fmt.Errorf("loadgen: session %s has not joined a room", x.user)
	}
	if x.dead.Load() {
		return fmt.Errorf("loadgen: session %s: %w", x.user, errSessionDead)
	}
	b := make([]byte, 0, len(m.room)+len(body)+80)
	b = append(b, "<message type='groupchat' to='"...)
	b = append(b, escAttr(m.room)...)
	b = append(b, "' id='lg"...)
	b = strconv.AppendUint(b, s.seq.Add(1), 10)
	b = append(b, "'><body>"...)
	b = append(b, escText(body)...)
	b = append(b, "</body></message>"...)
	x.enqueueRaw(b)
	return nil
}

var errSessionDead = errors.New("the stream has failed")

// Inbound is the number of top-level elements all sessions received so far,
// to tell when the server has gone quiet.
func (s *Sessions) Inbound() int64 {
	var n int64
	for _, x := range s.list {
		n += x.inbound.Load()
	}
	return n
}

// Close ends every session's stream and waits for its goroutines.
func (s *Sessions) Close() { s.r.closeAll(s.list) }

// received passes a message to the scenario's callback.
func (r *runner) received(s *session, it item) {
	head := it.raw[:it.head]
	var body []byte
	if it.head < len(it.raw) {
		body = bodyText(it.raw[it.head:])
	}
	r.recv(Received{Session: s.idx, From: attrValue(head, "from"), Type: attrValue(head, "type"), Body: body})
}
