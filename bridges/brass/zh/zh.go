// Package zh carries XMPP stanzas between pre-agreed servers without stream negotiation: XEP-0361 over TCP or TLS, and XEP-0365 (v0.2.1) RCOP over a STANAG 5066 SIS node.
package zh

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/relay"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	nsFMUC = "http://isode.com/protocol/fmuc"
	nsSM   = "urn:xmpp:sm:3"

	// streamPrefix is the stream open XEP-0361 assumes but never sends;
	// the receiver's decoder reads it before the first wire byte.
	streamPrefix = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
	streamClose  = "</stream:stream>"

	defaultMaxStanza = 256 << 10
)

// ErrBadItem is returned by Send for a payload that is not one stanza
// with a from in our domains and a to in the peer's: writing it would
// break the peer's stream or draw a stream error.
var ErrBadItem = fmt.Errorf("zh: item is not a stanza this link can carry: %w", relay.ErrBadItem)

// domainSet is the set of domains an agreement names.
type domainSet map[string]struct{}

func newDomainSet(what string, ds []string) (domainSet, error) {
	if len(ds) == 0 {
		return nil, fmt.Errorf("zh: no %s domains configured", what)
	}
	s := make(domainSet, len(ds))
	for _, d := range ds {
		j, err := jid.Parse(d)
		if err != nil || j.Domain() != j.String() {
			return nil, fmt.Errorf("zh: %s domain %q is not a domain", what, d)
		}
		s[j.Domain()] = struct{}{}
	}
	return s, nil
}

func (s domainSet) holds(addr string) bool {
	j, err := jid.Parse(addr)
	if err != nil {
		return false
	}
	_, ok := s[j.Domain()]
	return ok
}

// checkAddressing returns the RFC 6120 stream error condition for a
// stanza whose from or to lies outside the agreement, or "" if it fits.
func checkAddressing(el *wire.Element, from, to domainSet) string {
	f, t := el.Attr("from"), el.Attr("to")
	switch {
	case f == "" || t == "":
		return "improper-addressing"
	case !from.holds(f):
		return "invalid-from"
	case !to.holds(t):
		return "host-unknown"
	}
	return ""
}

func isStanza(el *wire.Element) bool {
	if el.Space != stanza.NSServer {
		return false
	}
	switch el.Name {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// receivedItem turns a validated stanza into an item for the relay: the
// payload is the stanza in the jabber:server context without a namespace
// declaration, and FMUC traffic is told apart by its fmuc child.
func receivedItem(el *wire.Element) *relay.Item {
	el.RemoveAttr("xmlns") // only ever jabber:server here: isStanza checked
	class := brlink.ClassXMPP
	if el.Child("fmuc", nsFMUC) != nil {
		class = brlink.ClassFMUC
	}
	return &relay.Item{Class: class, Precedence: brlink.Routine, Payload: el.Append(nil)}
}

// parseStanza parses b as exactly one element in the jabber:server
// context, within maxSize bytes.
func parseStanza(b []byte, maxSize int) (*wire.Element, error) {
	if len(b) > maxSize {
		return nil, fmt.Errorf("zh: stanza of %d bytes, limit %d", len(b), maxSize)
	}
	r := io.MultiReader(strings.NewReader(streamPrefix), strings.NewReader(string(b)), strings.NewReader(streamClose))
	d := wire.NewDecoder(r, wire.Limits{MaxStanza: maxSize})
	if _, err := d.Next(); err != nil {
		return nil, fmt.Errorf("zh: parse stanza: %w", err)
	}
	tok, err := d.Next()
	if err != nil {
		return nil, fmt.Errorf("zh: parse stanza: %w", err)
	}
	if tok.Kind != wire.Stanza {
		return nil, errors.New("zh: parse stanza: no element")
	}
	if end, err := d.Next(); err != nil || end.Kind != wire.StreamEnd {
		return nil, errors.New("zh: parse stanza: trailing data after the element")
	}
	return tok.Elem, nil
}

// checkOutgoing refuses a payload the peer would not accept.
func checkOutgoing(p []byte, maxSize int, local, peer domainSet) error {
	el, err := parseStanza(p, maxSize)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadItem, err)
	}
	if !isStanza(el) {
		return fmt.Errorf("%w: <%s/> in %q is not a stanza", ErrBadItem, el.Name, el.Space)
	}
	if el.HasAttr("xmlns") && el.Attr("xmlns") != stanza.NSServer {
		return fmt.Errorf("%w: stanza declares namespace %q", ErrBadItem, el.Attr("xmlns"))
	}
	if cond := checkAddressing(el, local, peer); cond != "" {
		return fmt.Errorf("%w: %s (from %q to %q)", ErrBadItem, cond, el.Attr("from"), el.Attr("to"))
	}
	return nil
}

// evQueue holds events for the relay so the goroutine owning a bearer's
// state never blocks on a slow consumer (which may itself be blocked in
// Send). Consecutive Acked events merge.
type evQueue struct {
	q   []relay.Event
	max int
}

func (q *evQueue) push(e relay.Event) {
	if n := len(q.q); n > 0 && e.Kind == relay.Acked && q.q[n-1].Kind == relay.Acked {
		q.q[n-1].IDs = append(q.q[n-1].IDs, e.IDs...)
		return
	}
	q.q = append(q.q, e)
}

// full says whether inputs that generate events should wait.
func (q *evQueue) full() bool { return len(q.q) >= q.max }

// out is ev when an event is waiting, nil (never ready) otherwise.
func (q *evQueue) out(ev chan<- relay.Event) chan<- relay.Event {
	if len(q.q) == 0 {
		return nil
	}
	return ev
}

func (q *evQueue) head() relay.Event {
	if len(q.q) == 0 {
		return relay.Event{}
	}
	return q.q[0]
}

func (q *evQueue) pop() {
	q.q[0] = relay.Event{}
	q.q = q.q[1:]
}

// backoff spaces reconnection attempts: doubling, capped, with jitter so
// two sides that lost the link together do not retry in lockstep.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// sendReq is a Send waiting for the owning goroutine's answer.
type sendReq struct {
	it    *relay.Item
	reply chan error // buffered: the owner never blocks answering
}
