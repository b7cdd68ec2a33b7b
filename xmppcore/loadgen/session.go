package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// session is one logged-in client with its own reader and writer goroutine,
// so a server that stalls one connection never blocks the others.
type session struct {
	idx    int
	user   string
	jid    string // full JID bound by the server
	x      *xconn
	from   *session // the session sending to this one
	prefix []byte   // "<message type='chat' to='<peer>' id='" or "<message type='groupchat' to='<room>' id='"

	// fanout is how many deliveries one message of this session's should
	// produce: 1 for 1:1 chat, the room's occupant count for room messages.
	fanout atomic.Int64
	muc    atomic.Pointer[membership] // the room this session is in, for RunMUC

	inbound atomic.Int64 // top-level elements received, to detect an idle server
	dead    atomic.Bool  // the stream failed: queue nothing, wait for nothing

	mu      sync.Mutex
	pending []byte      // bytes waiting for the writer
	msgs    int64       // benchmark messages in pending
	ph      *phaseState // phase those messages belong to
	seq     uint64
	writing bool

	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// login opens session i: stream, TLS, SASL, bind, session and presence.
func (r *runner) login(ctx context.Context, i int) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	user := r.cfg.user(i)
	x, f, err := dialStream(ctx, &r.cfg)
	if err != nil {
		return nil, err
	}
	var jid string
	f, err = x.authenticate(&r.cfg, user, f)
	if err == nil {
		jid, err = x.bindSession(f, "loadgen")
	}
	if err == nil {
		err = x.endLogin()
	}
	if err != nil {
		x.abort()
		return nil, err
	}
	s := &session{
		idx:  i,
		user: user,
		jid:  jid,
		x:    x,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	s.fanout.Store(1)
	r.wg.Go(func() { s.readLoop(r) })
	r.wg.Go(func() { s.writeLoop(r) })
	return s, nil
}

// readLoop consumes everything the server sends: benchmark messages are
// timed, requests answered, the rest (presence, roster, headlines) dropped.
func (s *session) readLoop(r *runner) {
	defer s.dead.Store(true)
	for {
		it, err := s.x.sc.next()
		if err != nil {
			if !r.closed.Load() {
				r.logErr("session %s: read: %v", s.user, err)
			}
			return
		}
		s.inbound.Add(1)
		switch it.kind {
		case kindStreamClose:
			if !r.closed.Load() {
				r.logErr("session %s: server closed the stream", s.user)
			}
			return
		case kindStreamOpen:
			continue
		}
		switch string(localName(it.raw[:it.head])) {
		case "message":
			if r.recv != nil {
				r.received(s, it)
			}
			r.onMessage(s, it)
		case "presence":
			r.onPresence(s, it)
		case "iq":
			if reply := controlReply(it); reply != nil {
				s.enqueueRaw(reply)
			} else {
				r.onIQResponse(s, it)
			}
		case "error":
			r.logErr("session %s: %s", s.user, clip(it.raw, 300))
			return
		}
	}
}

func (r *runner) onMessage(s *session, it item) {
	ph := r.phase.Load()
	if ph == nil {
		return
	}
	ts, st := benchStamp(it, ph.token)
	switch st {
	case msgBench:
		now := r.now()
		ph.hist.record(s.idx, now-ts)
		ph.delivered.Add(1)
		if ph.saturate && ph.active.Load() {
			if !ph.muc {
				s.from.enqueueMsg(r, ph, now)
			} else if m := s.muc.Load(); m != nil && m.isEcho(it) {
				// The room reflects each message to its sender too:
				// the echo frees a slot of the sender's own window.
				s.enqueueMsg(r, ph, now)
			}
		}
	case msgError:
		ph.errors.Add(1)
		// A bounced message is delivered to nobody.
		ph.expected.Add(-s.fanout.Load())
		// A bounce comes back to its sender: refill its own window.
		if ph.saturate && ph.active.Load() {
			s.enqueueMsg(r, ph, r.now())
		}
	}
}

// enqueueMsg queues one benchmark message to the peer with send time ts.
func (s *session) enqueueMsg(r *runner, ph *phaseState, ts int64) {
	if s.dead.Load() {
		return
	}
	s.mu.Lock()
	// Bounded so a server that stops reading cannot exhaust our memory;
	// what does not fit is never sent and so never counted.
	if len(s.pending) < maxQueueBytes {
		s.seq++
		s.pending = r.appendMessage(s.pending, s.prefix, s.seq, ph.token, ts)
		s.msgs++
		s.ph = ph
	}
	s.mu.Unlock()
	s.notify()
}

// enqueueRaw queues protocol bytes such as a ping reply.
func (s *session) enqueueRaw(b []byte) {
	s.mu.Lock()
	s.pending = append(s.pending, b...)
	s.mu.Unlock()
	s.notify()
}

func (s *session) notify() {
	select {
	case s.wake <- struct{}{}:
	default: // a wakeup is already pending; the writer takes everything queued
	}
}

// writeLoop writes whatever is queued in one call, so bursts cost one
// syscall rather than one per message.
func (s *session) writeLoop(r *runner) {
	var out []byte
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		out, s.pending = s.pending, out[:0]
		msgs, ph := s.msgs, s.ph
		s.msgs, s.ph = 0, nil
		s.writing = len(out) > 0
		s.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		_, err := s.x.rw.Write(out)
		s.mu.Lock()
		s.writing = false
		s.mu.Unlock()
		if err != nil {
			s.dead.Store(true)
			if !r.closed.Load() {
				r.logErr("session %s: write: %v", s.user, err)
			}
			return
		}
		if ph != nil {
			ph.sent.Add(msgs)
			ph.expected.Add(msgs * s.fanout.Load())
		}
	}
}

// flushed reports whether everything queued has been written (or never
// will be).
func (s *session) flushed() bool {
	if s.dead.Load() {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) == 0 && !s.writing
}

// discardPending drops queued messages that the drain could not flush,
// so they do not leak into the next phase.
func (s *session) discardPending() {
	s.mu.Lock()
	s.pending = s.pending[:0]
	s.msgs, s.ph = 0, nil
	s.mu.Unlock()
}

func (s *session) close(deadline time.Time) {
	s.closeOnce.Do(func() {
		close(s.done)
		s.x.close(deadline)
	})
}

// appendMessage appends a message whose body is
// "<token> <send time ns> <padding>", cfg.BodySize bytes in all.
func (r *runner) appendMessage(b, prefix []byte, seq uint64, token []byte, ts int64) []byte {
	b = append(b, prefix...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "'><body>"...)
	n := len(b)
	b = append(b, token...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, ' ')
	if pad := r.cfg.BodySize - (len(b) - n); pad > 0 {
		b = append(b, r.pad[:pad]...)
	}
	return append(b, "</body></message>"...)
}

// endLogin lifts the login deadline once the session is established.
func (x *xconn) endLogin() error {
	if !x.stop() {
		return errors.New("login cancelled")
	}
	if err := x.conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear deadline: %w", err)
	}
	return nil
}
