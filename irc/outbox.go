package irc

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// The outbox keeps the lines given to SendKept across a lost connection (Config.Outbox): what was
// not yet written, or written but not yet confirmed by the server, is sent again, in order, after
// the reconnect and the rejoin of the channels. A server processes a client's lines in order, so
// one answer confirms every line before it: the echo of one of our lines (echo-message), or else
// the PONG to a PING sent after them ("PING :aldis-ack-<n>", paced like the lines, one per round
// trip). That makes delivery across an outage at least once rather than at most once: a line the
// server read in the last round trip before the connection broke, whose answer never came, is
// sent twice.

// kept is one line given to SendKept.
type kept struct {
	msg Message
	ref string
	at  time.Time
	seq uint64 // the order it was written in, on the current connection
	err error  // why it was given up (nil: its age)
}

// outLine is one line for a session's paced queue.
type outLine struct {
	b []byte
	k *kept // nil: a line that is not kept
}

const ackPrefix = "aldis-ack-"

// outbox is a client's kept lines. Its lock is taken by senders, by the writer and by Run's
// goroutine; a session's enqMu may be taken under it, never the other way round.
type outbox struct {
	max int
	age time.Duration

	mu      sync.Mutex
	waiting []*kept       // not on any connection: given while disconnected, or back from a lost one
	written []*kept       // written on the current connection, not yet confirmed
	expired []*kept       // dropped for their age, to be reported
	seq     uint64        // of the last line written
	pinging bool          // an ack PING is out
	kick    chan struct{} // lines expired: report them now
}

func newOutbox(max int, age time.Duration) *outbox {
	return &outbox{max: max, age: age, kick: make(chan struct{}, 1)}
}

func (o *outbox) signal() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// add keeps lines given while they can't go on a connection; o.mu is held. At most max lines
// wait so (and as many more written and not yet confirmed: see wrote).
func (o *outbox) add(ks []*kept) error {
	if len(o.waiting)+len(ks) > o.max {
		return ErrOutboxFull
	}
	o.waiting = append(o.waiting, ks...)
	return nil
}

// refill moves waiting lines onto s's queue while it has room, dropping (for reporting) those
// older than the age limit; o.mu is held.
func (o *outbox) refill(s *session, lineLen int) {
	if o.expire(time.Now()) {
		o.signal()
	}
	for len(o.waiting) > 0 {
		k := o.waiting[0]
		b, err := Serialize(&k.msg, lineLen)
		if err != nil {
			// Longer than this server's lines (split for another's): reported, not sent.
			k.err = err
			o.expired = append(o.expired, k)
			o.signal()
		} else if s.enqueue(outLine{b: b, k: k}) != nil {
			break // full: the writer refills as it drains
		}
		o.waiting[0] = nil
		o.waiting = o.waiting[1:]
	}
	if len(o.waiting) == 0 {
		o.waiting = nil
	}
}

// expire moves waiting lines older than the age limit to expired; o.mu is held.
func (o *outbox) expire(now time.Time) bool {
	i := 0
	for i < len(o.waiting) && now.Sub(o.waiting[i].at) > o.age {
		i++
	}
	if i == 0 {
		return false
	}
	o.expired = append(o.expired, o.waiting[:i]...)
	o.waiting = o.waiting[i:]
	return true
}

// wrote records that the writer wrote k; with ping, it returns the number to PING for when no
// confirmation is under way.
func (o *outbox) wrote(k *kept, ping bool) (n uint64, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	k.seq = o.seq
	o.written = append(o.written, k)
	if len(o.written) > o.max { // a server that never answers PING: don't hold lines for ever
		o.written[0] = nil
		o.written = o.written[1:]
	}
	if !ping || o.pinging {
		return 0, false
	}
	o.pinging = true
	return o.seq, true
}

// echoed follows the server's echo of a line we sent to target: the first written line with that
// target and text, and every line written before it, are confirmed.
func (o *outbox) echoed(target, text string, cm CaseMapping) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, k := range o.written {
		if cm.Equal(Param(&k.msg, 0), target) && LastParam(&k.msg) == text {
			clear(o.written[:i+1])
			o.written = o.written[i+1:]
			if len(o.written) == 0 {
				o.written = nil
			}
			return
		}
	}
}

// acked follows the PONG to "PING :aldis-ack-<n>": the lines up to n are confirmed. It returns
// the number to PING for next, if lines were written since.
func (o *outbox) acked(token string) (ping uint64, ok bool) {
	n, err := strconv.ParseUint(strings.TrimPrefix(token, ackPrefix), 10, 64)
	if err != nil {
		return 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.written) && o.written[i].seq <= n {
		o.written[i] = nil
		i++
	}
	o.written = o.written[i:]
	if len(o.written) == 0 {
		o.written = nil
		o.pinging = false
		return 0, false
	}
	return o.seq, true
}

// lost takes back, when s's connection ended, what it had not confirmed: the lines written, the
// one the writer held, and those still queued, in that order, before the waiting ones.
func (o *outbox) lost(s *session) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s.dead = true
	back := o.written
	if s.inHand != nil {
		back = append(back, s.inHand)
	}
	for {
		select {
		case l := <-s.out:
			if l.k != nil {
				back = append(back, l.k)
			}
			continue
		default:
		}
		break
	}
	o.waiting = append(back, o.waiting...)
	o.written, o.pinging = nil, false
}

// takeExpired returns the lines to report as not sent: expired ones, and, when all is set,
// every line still held.
func (o *outbox) takeExpired(all bool) []*kept {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expire(time.Now())
	out := o.expired
	o.expired = nil
	if all {
		out = append(out, o.written...)
		out = append(out, o.waiting...)
		o.written, o.waiting = nil, nil
	}
	return out
}
