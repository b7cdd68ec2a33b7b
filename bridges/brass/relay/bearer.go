// Package relay is the store-and-forward link relay between two Aldis
// servers over a constrained bearer (PROTOCOLS.md §4.4): durable queues,
// precedence, end-to-end acknowledgement, traffic optimisation and labels.
package relay

import (
	"context"
	"errors"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// Item is one unit of traffic crossing a link: a stanza or a mail.
type Item struct {
	// ID identifies the item end to end: acknowledgements name it and the
	// receiver drops a second copy. A zero ID on a received item means the
	// bearer cannot tell copies apart (a foreign XEP-0361 peer).
	ID         brlink.ID
	Class      brlink.Class
	Precedence brlink.Precedence
	Expires    time.Time // zero: never
	// Payload is, for ClassXMPP and ClassFMUC, one stanza in the
	// jabber:server context without a namespace declaration; for
	// ClassEmail, the envelope lines of PROTOCOLS.md §4.4.2 then the
	// RFC 5322 message.
	Payload []byte
}

// Bearer carries items over one kind of link: BRLINK frames over a
// STANAG 5066 SIS or TCP, a XEP-0361 stanza stream, RCOP over SIS. It
// connects, reconnects and reports what happens as events; the relay above
// it keeps the queue, retries and acknowledgement bookkeeping.
type Bearer interface {
	// Run keeps the bearer connected until ctx ends, sending events to
	// ev. It returns only when ctx ends or the configuration cannot work
	// (the error says why).
	Run(ctx context.Context, ev chan<- Event) error
	// Send hands one item to the bearer for transmission, highest
	// precedence first. It returns once the item is queued in the bearer
	// (not when it is acknowledged), blocks while the bearer's bounded
	// transmit buffer is full, and fails with ErrDown when the link is
	// down and ErrTooLarge when the item can never cross this bearer.
	Send(ctx context.Context, it *Item) error
}

// EventKind says what happened on a bearer.
type EventKind int

// Bearer events.
const (
	// Up: the link is usable (for BRLINK, after HELLO/HELLO-ACK). Items
	// handed to the bearer before the last Down and not acknowledged must
	// be sent again.
	Up EventKind = iota + 1
	// Down: the link is lost; Send fails with ErrDown until the next Up.
	Down
	// Acked: the far side has taken responsibility for the items in IDs.
	Acked
	// Rejected: the far side refused the items in IDs for good (BRLINK
	// NACK: expired or refused); Err says why.
	Rejected
	// Received: an item arrived from the far side, in Item. The bearer
	// acknowledges it only after the relay calls the Ack function.
	Received
)

// Event is one report from a bearer.
type Event struct {
	Kind EventKind
	IDs  []brlink.ID // Acked, Rejected
	Item *Item       // Received
	// Ack, on Received, acknowledges the item to the far side once the
	// relay has stored it durably. Nil when the bearer has no
	// acknowledgements of its own.
	Ack func()
	Err error // Down, Rejected: the cause
	// Degraded, on Up, reports a link slower than its configured
	// threshold, on which traffic optimisation applies.
	Degraded bool
}

// Bearer errors.
var (
	ErrDown     = errors.New("relay: link down")
	ErrTooLarge = errors.New("relay: item too large for the link")
	// ErrBadItem: the bearer can never carry this item (it breaks the
	// agreement with the far side); the item fails at once.
	ErrBadItem = errors.New("relay: item the link cannot carry")
)
