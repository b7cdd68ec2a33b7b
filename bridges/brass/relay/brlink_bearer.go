package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// BRLINKConfig is what the SIS and TCP BRLINK bearers share. Zero values
// take the defaults noted, chosen for HF: a 2,400 bit/s link whose round
// trip under ARQ takes from seconds to a minute.
type BRLINKConfig struct {
	// Name is our node name, sent in HELLO (for logs on the far side).
	Name string
	// Compression of the DATA we send: "none", "frame" (each frame
	// decodes alone; for broadcast and non-ARQ) or "link" (one stream per
	// precedence, in-order ARQ carriers only). Default "frame".
	Compression string
	// Rate paces transmission, in bit/s, so that frames wait in our
	// precedence queue rather than in the modem's FIFO. Set it to the air
	// rate. 0: no pacing (TCP on a fast network).
	Rate int
	// Burst is how many bytes beyond the current frame the pacer lets out
	// back to back (512).
	Burst int
	// MaxItem bounds an item's payload, both sent and received after
	// decompression (1 MiB).
	MaxItem int
	// QueueItems bounds the items queued in the bearer; Send blocks while
	// it is full (256).
	QueueItems int
	// AckDelay is how long a receipt waits to share an ACK frame with
	// others (500 ms); AckBatch is how many make the frame go at once (60).
	AckDelay time.Duration
	AckBatch int
	// HelloRetry is the first wait for a HELLO-ACK before HELLO is sent
	// again (15 s); the wait doubles up to HelloRetryMax (2 min).
	HelloRetry    time.Duration
	HelloRetryMax time.Duration
	// ProbeIdle is the silence from the peer after which we probe it with
	// HELLO (5 min); ProbeTimeout is how long the probe may go unanswered
	// before the link is declared down (3 min). Any frame answers it.
	ProbeIdle    time.Duration
	ProbeTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the jittered, doubling wait
	// before reconnecting the carrier (1 s, 1 min).
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// DegradedBelow: a Rate under this many bit/s marks Up as Degraded,
	// so traffic optimisation applies (0: never).
	DegradedBelow int
	Logger        *slog.Logger
}

func (c *BRLINKConfig) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Compression == "" {
		c.Compression = "frame"
	}
	def(&c.MaxItem, 1<<20)
	def(&c.QueueItems, 256)
	def(&c.AckBatch, 60)
	defDur(&c.AckDelay, 500*time.Millisecond)
	defDur(&c.HelloRetry, 15*time.Second)
	defDur(&c.HelloRetryMax, 2*time.Minute)
	defDur(&c.ProbeIdle, 5*time.Minute)
	defDur(&c.ProbeTimeout, 3*time.Minute)
	defDur(&c.ReconnectMin, time.Second)
	defDur(&c.ReconnectMax, time.Minute)
	c.HelloRetryMax = max(c.HelloRetryMax, c.HelloRetry)
	c.ReconnectMax = max(c.ReconnectMax, c.ReconnectMin)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// minMTU leaves a frame room for a useful payload after the header and
// the DEFLATE slack.
const minMTU = brlink.HeaderLen + 2*frameSlack

// Bounds of the bearer's internal queues.
const (
	maxEvents     = 256  // events waiting for the relay; beyond, we stop reading the carrier
	maxAckPending = 4096 // receipts waiting to be acknowledged; the oldest go (the sender resends)
	maxCtl        = 8    // HELLO / HELLO-ACK frames waiting
	maxPartials   = 16   // incomplete received items
)

// carrierEvent is what a carrier connection reports.
type carrierEvent struct {
	frame []byte // a received frame
	flow  int    // flowOff, flowOn
	// unreachable: the carrier says the peer cannot be reached (SIS
	// rejections); the link is down though the carrier is connected.
	unreachable error
}

const (
	flowOff = 1
	flowOn  = 2
)

// brlinkConn is one connection of a carrier.
type brlinkConn interface {
	MTU() int
	// Write sends one frame, blocking only for the carrier's own flow
	// control.
	Write(ctx context.Context, frame []byte, p brlink.Precedence) error
	// Events delivers what arrives; it is closed when the connection ends.
	Events() <-chan carrierEvent
	// Err says why the connection ended.
	Err() error
	Close()
}

// brlinkCarrier makes connections: a TCP dialer or listener, a SIS client.
type brlinkCarrier interface {
	Dial(ctx context.Context) (brlinkConn, error)
	Close()
}

// carrierTraits say what the BRLINK core may assume of a carrier.
type carrierTraits struct {
	ordered     bool // in-order, reliable delivery while connected (link compression allowed)
	broadcast   bool // one to many: Up on connect, no HELLO-ACK awaited
	broadcastFl bool // set FlagBroadcast on DATA
}

// BRLINKStats counts a bearer's traffic.
type BRLINKStats struct {
	FramesOut, BytesOut int64 // frames handed to the carrier, BRLINK bytes (headers included)
	DataBytesOut        int64 // of which DATA frames
	FramesIn, BytesIn   int64
	ItemsOut, ItemsIn   int64 // items fully handed over / received whole
}

// BRLINKBearer carries items as BRLINK frames (PROTOCOLS.md §4.4.2) over
// a carrier: segmentation, precedence with pre-emption at segment
// boundaries, pacing, DEFLATE, HELLO, batched ACKs. It implements Bearer.
// One goroutine, Run's, owns its state.
//
// Link up: on each carrier connection we pick a session nonce and send
// HELLO (retried with doubling waits, HelloRetry to HelloRetryMax); Up
// follows the HELLO-ACK that echoes it. Every HELLO is answered. A HELLO
// with a new nonce while up means the peer restarted: our streams
// restart, the queue empties and Up is reported again, so the relay
// resends what is unacknowledged.
//
// Down: the carrier connection is lost (then reconnect after a jittered,
// doubling wait, ReconnectMin to ReconnectMax); the peer is silent for
// ProbeIdle and a probe HELLO gets no answer within ProbeTimeout (with the
// defaults, 8 minutes of silence at worst); or, over SIS, the node rejects
// a U_PDU with reason 1 (TTL expired), 2 (SAP not bound at the peer) or 3
// (no response). A Down empties the bearer's queue.
type BRLINKBearer struct {
	cfg     BRLINKConfig
	comp    brlink.Compression
	traits  carrierTraits
	carrier brlinkCarrier
	log     *slog.Logger

	reqs    chan sendReq
	acks    chan brlink.ID
	slots   chan struct{} // a token per queued item
	started atomic.Bool
	done    chan struct{} // closed when Run returns

	framesOut, bytesOut, dataBytesOut, framesIn, bytesIn, itemsOut, itemsIn atomic.Int64
}

type sendReq struct {
	it    *Item
	reply chan error
}

func newBRLINKBearer(cfg BRLINKConfig, traits carrierTraits, c brlinkCarrier) (*BRLINKBearer, error) {
	cfg.defaults()
	comp, err := brlink.ParseCompression(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("relay: BRLINK: %w", err)
	}
	if comp == brlink.CompressLink && !traits.ordered {
		return nil, fmt.Errorf("relay: BRLINK: link compression needs an in-order ARQ carrier; use frame")
	}
	if len(cfg.Name) > brlink.MaxNodeName {
		return nil, fmt.Errorf("relay: BRLINK: node name of %d bytes, over %d", len(cfg.Name), brlink.MaxNodeName)
	}
	return &BRLINKBearer{
		cfg: cfg, comp: comp, traits: traits, carrier: c, log: cfg.Logger,
		reqs:  make(chan sendReq),
		acks:  make(chan brlink.ID, 64),
		slots: make(chan struct{}, cfg.QueueItems),
		done:  make(chan struct{}),
	}, nil
}

// Stats returns the traffic counters so far.
func (b *BRLINKBearer) Stats() BRLINKStats {
	return BRLINKStats{
		FramesOut: b.framesOut.Load(), BytesOut: b.bytesOut.Load(), DataBytesOut: b.dataBytesOut.Load(),
		FramesIn: b.framesIn.Load(), BytesIn: b.bytesIn.Load(),
		ItemsOut: b.itemsOut.Load(), ItemsIn: b.itemsIn.Load(),
	}
}

// Send queues an item (see Bearer). Before Run has started it waits.
func (b *BRLINKBearer) Send(ctx context.Context, it *Item) error {
	if it.Precedence > brlink.Override || it.Class > brlink.ClassFMUC {
		return fmt.Errorf("relay: BRLINK: precedence %d class %d: %w", it.Precedence, it.Class, ErrBadItem)
	}
	if len(it.Payload) > b.cfg.MaxItem {
		return fmt.Errorf("relay: BRLINK: %d bytes, limit %d: %w", len(it.Payload), b.cfg.MaxItem, ErrTooLarge)
	}
	select {
	case <-b.done:
		return ErrDown
	default:
	}
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("relay: BRLINK send: %w", ctx.Err())
	case <-b.done:
		return ErrDown
	}
	r := sendReq{it: it, reply: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		<-b.slots
		return fmt.Errorf("relay: BRLINK send: %w", ctx.Err())
	case <-b.done:
		<-b.slots
		return ErrDown
	}
	// The owner answers at once; it does not wait on the link.
	err := <-r.reply
	if err != nil {
		<-b.slots
	}
	return err
}

// Run keeps the carrier connected and the link up until ctx ends.
func (b *BRLINKBearer) Run(ctx context.Context, ev chan<- Event) error {
	if b.started.Swap(true) {
		return errors.New("relay: BRLINK bearer already running")
	}
	defer close(b.done)
	defer b.carrier.Close()
	l := newLinkState(b)
	return l.run(ctx, ev)
}

// txItem is an item in the transmit queue.
type txItem struct {
	it     *Item
	frames [][]byte // encoded when its first segment is due, so link compression follows transmission order
	next   int
}

type txFrame struct {
	b    []byte
	prec brlink.Precedence
	data bool
	last bool // the item's last segment
}

// linkState is the bearer's state, owned by the Run goroutine.
type linkState struct {
	b    *BRLINKBearer
	cfg  *BRLINKConfig
	log  *slog.Logger
	comp brlink.Compression

	// carrier connection
	conn       brlinkConn
	connEv     <-chan carrierEvent
	cancelConn context.CancelFunc
	txc        chan txFrame
	txDone     chan error
	writerBusy bool
	mtu        int
	flowOn     bool
	dialing    bool
	redialAt   time.Time
	redialWait time.Duration

	// handshake
	up          bool
	nonce       uint64 // our session; a new one makes the peer restart its view of us
	awaitAck    bool   // a HELLO-ACK echoing nonce is wanted
	resync      bool   // awaitAck while up: we asked the peer to restart its streams
	helloAt     time.Time
	helloWait   time.Duration
	peerNonce   uint64
	peerComp    brlink.Compression
	peerKnown   bool
	lastRx      time.Time
	probeBy     time.Time // while probing: the peer must be heard from by then
	ctl         []txFrame
	queues      [brlink.Override + 1][]*txItem
	queued      int
	tokens      float64
	tokensAt    time.Time
	paceAt      time.Time
	fdefl       frameDeflater
	ldefl       linkDeflater
	linfl       linkInflater
	reasm       *brlink.Reassembler
	acks        []brlink.ID
	ackAt       time.Time
	out         []Event
	lastExpired time.Time
}

func newLinkState(b *BRLINKBearer) *linkState {
	l := &linkState{b: b, cfg: &b.cfg, log: b.log, comp: b.comp,
		reasm: brlink.NewReassembler(maxPartials), linfl: linkInflater{limit: b.cfg.MaxItem},
		redialWait: b.cfg.ReconnectMin}
	// Held bytes are bounded; a frame-mode segment may carry up to
	// MaxItem once inflated, so allow a few whole items.
	l.reasm.LimitBytes(4 * b.cfg.MaxItem)
	l.ldefl.epoch = uint8(rand.Uint32())
	return l
}

func (l *linkState) emit(e Event) { l.out = append(l.out, e) }

// run is the owner loop.
func (l *linkState) run(ctx context.Context, ev chan<- Event) error {
	dialed := make(chan dialResult)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer l.dropConn(nil, time.Now())
	for {
		now := time.Now()
		if l.conn == nil && !l.dialing && !now.Before(l.redialAt) {
			l.dialing = true
			go func() {
				c, err := l.b.carrier.Dial(ctx)
				select {
				case dialed <- dialResult{c, err}:
				case <-ctx.Done():
					if c != nil {
						c.Close()
					}
				}
			}()
		}
		l.pump(now)
		var evc chan<- Event
		var head Event
		if len(l.out) > 0 {
			evc, head = ev, l.out[0]
		}
		in := l.connEv
		if len(l.out) >= maxEvents {
			in = nil // the relay is behind: let the carrier apply back-pressure
		}
		timer.Reset(l.wake(now))
		select {
		case <-ctx.Done():
			return nil
		case evc <- head:
			l.out[0] = Event{}
			l.out = l.out[1:]
		case r := <-dialed:
			l.dialing = false
			if r.err != nil {
				l.log.Warn("brlink: carrier connect failed", "err", r.err)
				l.scheduleRedial(time.Now())
				continue
			}
			l.startConn(ctx, r.c, time.Now())
		case r := <-l.b.reqs:
			r.reply <- l.enqueue(r.it)
		case id := <-l.b.acks:
			l.addAck(id, time.Now())
		case e, ok := <-in:
			now := time.Now()
			if !ok {
				l.dropConn(l.conn.Err(), now)
				continue
			}
			l.carrierEvent(e, now)
		case err := <-l.txDone:
			l.writerBusy = false
			if err != nil {
				l.dropConn(err, time.Now())
			}
		case <-timer.C:
			l.tick(time.Now())
		}
	}
}

type dialResult struct {
	c   brlinkConn
	err error
}

// wake is how long until something is due.
func (l *linkState) wake(now time.Time) time.Duration {
	next := now.Add(time.Hour)
	at := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	if l.conn == nil {
		if !l.dialing {
			at(l.redialAt)
		}
	} else {
		if l.awaitAck {
			at(l.helloAt)
		}
		if len(l.acks) > 0 {
			at(l.ackAt)
		}
		at(l.paceAt)
		at(l.probeBy)
		if l.up && l.probeBy.IsZero() && !l.traits().broadcast {
			at(l.lastRx.Add(l.cfg.ProbeIdle))
		}
	}
	if l.reasm.Pending() > 0 {
		at(l.lastExpired.Add(time.Second))
	}
	return max(0, next.Sub(now))
}

func (l *linkState) traits() carrierTraits { return l.b.traits }

// tick does whatever timers are due.
func (l *linkState) tick(now time.Time) {
	if l.reasm.Pending() > 0 && now.Sub(l.lastExpired) >= time.Second {
		l.lastExpired = now
		if n := l.reasm.Expire(now); n > 0 {
			l.log.Info("brlink: incomplete items expired", "count", n)
		}
	}
	if l.conn == nil {
		return
	}
	if !l.probeBy.IsZero() && !now.Before(l.probeBy) {
		l.linkLost(errors.New("relay: BRLINK: no answer from the peer"), now)
		return
	}
	if l.up && l.probeBy.IsZero() && !l.traits().broadcast && now.Sub(l.lastRx) >= l.cfg.ProbeIdle {
		l.log.Info("brlink: peer silent, probing", "silent", now.Sub(l.lastRx).Round(time.Second))
		l.probeBy = now.Add(l.cfg.ProbeTimeout)
		l.awaitAck = true
		l.helloWait = l.cfg.HelloRetry
		l.sendHello(now)
	}
	if l.awaitAck && !now.Before(l.helloAt) {
		l.sendHello(now)
	}
}

// startConn begins a session on a new carrier connection.
func (l *linkState) startConn(ctx context.Context, c brlinkConn, now time.Time) {
	sctx, cancel := context.WithCancel(ctx)
	l.conn, l.connEv, l.cancelConn = c, c.Events(), cancel
	l.mtu = c.MTU()
	l.flowOn = true
	l.txc, l.txDone = make(chan txFrame, 1), make(chan error, 1)
	go func(txc <-chan txFrame, done chan<- error) {
		for f := range txc {
			done <- c.Write(sctx, f.b, f.prec)
		}
	}(l.txc, l.txDone)
	l.tokens, l.tokensAt = float64(l.burst()), now
	l.lastRx = now
	l.log.Info("brlink: carrier connected", "mtu", l.mtu)
	l.newSession(now)
	if l.traits().broadcast {
		// One to many: no single HELLO-ACK to wait for.
		l.awaitAck = false
		l.setUp(now)
	}
}

// newSession picks a new nonce and restarts our streams: the peer, seeing
// the nonce, restarts its view of us, so both sides start in step.
func (l *linkState) newSession(now time.Time) {
	l.nonce = rand.Uint64() | 1
	l.ldefl.reset()
	l.awaitAck, l.resync = true, false
	l.helloWait = l.cfg.HelloRetry
	l.sendHello(now)
}

// burst is the pacer's bucket: small, so that little waits in the modem
// where a FLASH item could not overtake it, yet enough to keep the modem
// busy across our scheduling jitter.
func (l *linkState) burst() int {
	if l.cfg.Burst > 0 {
		return l.cfg.Burst
	}
	return min(512, l.mtu)
}

// dropConn ends the carrier connection, and the link with it.
func (l *linkState) dropConn(err error, now time.Time) {
	if l.conn == nil {
		return
	}
	if err == nil {
		err = errors.New("relay: BRLINK: carrier closed")
	}
	l.log.Warn("brlink: carrier lost", "err", err)
	l.setDown(fmt.Errorf("%w: %w", ErrDown, err))
	l.cancelConn()
	l.conn.Close()
	close(l.txc)
	l.conn, l.connEv, l.txc, l.txDone, l.writerBusy = nil, nil, nil, nil, false
	l.awaitAck, l.resync, l.probeBy, l.paceAt = false, false, time.Time{}, time.Time{}
	l.ctl = nil
	l.scheduleRedial(now)
}

func (l *linkState) scheduleRedial(now time.Time) {
	w := l.redialWait
	l.redialAt = now.Add(w/2 + rand.N(w/2+1))
	l.redialWait = min(2*w, l.cfg.ReconnectMax)
}

// linkLost: the carrier is connected but the peer is not answering.
func (l *linkState) linkLost(err error, now time.Time) {
	l.log.Warn("brlink: link down", "err", err)
	l.setDown(fmt.Errorf("%w: %w", ErrDown, err))
	l.probeBy = time.Time{}
	l.newSession(now)
}

func (l *linkState) setUp(now time.Time) {
	l.up = true
	l.redialWait = l.cfg.ReconnectMin
	l.log.Info("brlink: link up", "peer_compression", l.peerComp)
	l.emit(Event{Kind: Up, Degraded: l.degraded()})
}

func (l *linkState) degraded() bool {
	return l.cfg.DegradedBelow > 0 && l.cfg.Rate > 0 && l.cfg.Rate < l.cfg.DegradedBelow
}

func (l *linkState) setDown(err error) {
	l.clearQueue()
	if l.up {
		l.up = false
		l.emit(Event{Kind: Down, Err: err})
	}
}

// clearQueue forgets queued items: after Down, or a restarted peer, the
// relay sends every unacknowledged item again.
func (l *linkState) clearQueue() {
	for p := range l.queues {
		for range l.queues[p] {
			<-l.b.slots
		}
		l.queues[p] = nil
	}
	l.queued = 0
	// Frames already with the writer may still leave; the rest of their
	// items will not, and link streams restart.
	l.ldefl.reset()
}

// enqueue takes an item from Send.
func (l *linkState) enqueue(it *Item) error {
	if !l.up || l.conn == nil {
		return ErrDown
	}
	if n := l.maxSegments(len(it.Payload)); n > 0xFFFF {
		return fmt.Errorf("relay: BRLINK: %d bytes need up to %d segments at MTU %d: %w", len(it.Payload), n, l.mtu, ErrTooLarge)
	}
	l.queues[it.Precedence] = append(l.queues[it.Precedence], &txItem{it: it})
	l.queued++
	return nil
}

// maxSegments bounds the segments n payload bytes can take.
func (l *linkState) maxSegments(n int) int {
	room := l.mtu - brlink.HeaderLen
	switch l.comp {
	case brlink.CompressFrame:
		room -= frameSlack
	case brlink.CompressLink:
		n += n/1000 + 64 // stored blocks, flush marker, prefix
	}
	return max(1, (n+room-1)/room)
}

// encode turns an item into its frames.
func (l *linkState) encode(it *Item) ([][]byte, error) {
	tmpl := brlink.Frame{Flags: brlink.FlagAckReq, Precedence: it.Precedence, Class: it.Class, ID: it.ID}
	if !it.Expires.IsZero() {
		tmpl.Expires = uint32(min(max(it.Expires.Unix(), 1), 0xFFFFFFFF))
	}
	if l.traits().broadcastFl {
		tmpl.Flags |= brlink.FlagBroadcast
	}
	var frames []brlink.Frame
	var err error
	switch l.comp {
	case brlink.CompressNone:
		frames, err = brlink.Split(tmpl, it.Payload, l.mtu)
	case brlink.CompressLink:
		var c []byte
		if c, err = l.ldefl.compress(it.Precedence, it.Payload); err == nil {
			tmpl.Flags |= brlink.FlagDeflate
			frames, err = brlink.Split(tmpl, c, l.mtu)
		}
	case brlink.CompressFrame:
		var chunks [][]byte
		if chunks, err = l.fdefl.chunks(it.Payload, l.mtu-brlink.HeaderLen); err == nil {
			if len(chunks) > 0xFFFF {
				return nil, fmt.Errorf("relay: BRLINK: %d segments: %w", len(chunks), ErrTooLarge)
			}
			tmpl.Flags |= brlink.FlagDeflate
			for i, c := range chunks {
				f := tmpl
				f.Type, f.Segment, f.Segments, f.Payload = brlink.Data, uint16(i), uint16(len(chunks)), c
				if i == 0 {
					f.Flags |= brlink.FlagFirst
				}
				if i == len(chunks)-1 {
					f.Flags |= brlink.FlagLast
				}
				frames = append(frames, f)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("relay: BRLINK encode: %w", err)
	}
	out := make([][]byte, len(frames))
	for i := range frames {
		if out[i], err = brlink.Append(nil, &frames[i]); err != nil {
			return nil, fmt.Errorf("relay: BRLINK encode: %w", err)
		}
	}
	return out, nil
}

// pump hands the next frame to the writer when the carrier and the pacer
// allow: control frames first, then the highest precedence, so a FLASH
// item overtakes ROUTINE ones at the next segment boundary.
func (l *linkState) pump(now time.Time) {
	if l.conn == nil || l.writerBusy || !l.flowOn {
		return
	}
	if l.cfg.Rate > 0 {
		l.tokens = min(float64(l.burst()), l.tokens+now.Sub(l.tokensAt).Seconds()*float64(l.cfg.Rate)/8)
		l.tokensAt = now
		if l.tokens < 0 {
			l.paceAt = now.Add(time.Duration(-l.tokens * 8 / float64(l.cfg.Rate) * float64(time.Second)))
			return
		}
	}
	l.paceAt = time.Time{}
	f, ok := l.nextFrame(now)
	if !ok {
		return
	}
	l.txc <- f // buffered, and the writer is idle
	l.writerBusy = true
	l.tokens -= float64(len(f.b))
	l.b.framesOut.Add(1)
	l.b.bytesOut.Add(int64(len(f.b)))
	if f.data {
		l.b.dataBytesOut.Add(int64(len(f.b)))
		if f.last {
			l.b.itemsOut.Add(1)
		}
	}
}

func (l *linkState) nextFrame(now time.Time) (txFrame, bool) {
	if len(l.ctl) > 0 {
		f := l.ctl[0]
		l.ctl = l.ctl[1:]
		return f, true
	}
	if len(l.acks) > 0 && (!now.Before(l.ackAt) || len(l.acks) >= l.cfg.AckBatch) {
		return l.ackFrame(), true
	}
	if !l.up {
		return txFrame{}, false
	}
	for p := brlink.Override; ; p-- {
		for len(l.queues[p]) > 0 {
			t := l.queues[p][0]
			if t.frames == nil {
				if !t.it.Expires.IsZero() && now.After(t.it.Expires) {
					// Not worth the air time; the relay reports the expiry.
					l.log.Debug("brlink: expired item not sent", "id", fmt.Sprintf("%x", t.it.ID))
					l.popItem(p)
					continue
				}
				frames, err := l.encode(t.it)
				if err != nil {
					l.log.Error("brlink: item cannot be sent", "id", fmt.Sprintf("%x", t.it.ID), "err", err)
					l.popItem(p)
					l.emit(Event{Kind: Rejected, IDs: []brlink.ID{t.it.ID}, Err: err})
					continue
				}
				t.frames = frames
			}
			f := txFrame{b: t.frames[t.next], prec: p, data: true}
			t.frames[t.next] = nil
			t.next++
			if t.next == len(t.frames) {
				f.last = true
				l.popItem(p)
			}
			return f, true
		}
		if p == brlink.Deferred {
			return txFrame{}, false
		}
	}
}

func (l *linkState) popItem(p brlink.Precedence) {
	l.queues[p][0] = nil
	l.queues[p] = l.queues[p][1:]
	l.queued--
	<-l.b.slots
}

// ackFrame takes up to one frame's worth of pending receipts.
func (l *linkState) ackFrame() txFrame {
	n := min(len(l.acks), max(1, (l.mtu-brlink.HeaderLen)/16))
	f := brlink.Frame{Type: brlink.Ack, Precedence: brlink.Override, Class: brlink.ClassCtl, Segments: 1, IDs: l.acks[:n]}
	b, _ := brlink.Append(nil, &f) // fields are valid by construction
	l.acks = append(l.acks[:0], l.acks[n:]...)
	if len(l.acks) == 0 {
		l.ackAt = time.Time{}
	}
	return txFrame{b: b, prec: brlink.Override}
}

func (l *linkState) addAck(id brlink.ID, now time.Time) {
	if len(l.acks) >= maxAckPending {
		l.acks = append(l.acks[:0], l.acks[1:]...)
	}
	if len(l.acks) == 0 {
		l.ackAt = now.Add(l.cfg.AckDelay)
	}
	l.acks = append(l.acks, id)
}

func (l *linkState) queueCtl(t brlink.Type, h *brlink.HelloBody) {
	body, err := brlink.AppendHello(nil, h)
	if err != nil {
		l.log.Error("brlink: HELLO", "err", err)
		return
	}
	f := brlink.Frame{Type: t, Precedence: brlink.Override, Class: brlink.ClassCtl, Segments: 1, Payload: body}
	b, err := brlink.Append(nil, &f)
	if err != nil {
		l.log.Error("brlink: HELLO", "err", err)
		return
	}
	if len(l.ctl) >= maxCtl {
		l.ctl = l.ctl[1:]
	}
	l.ctl = append(l.ctl, txFrame{b: b, prec: brlink.Override})
}

func (l *linkState) hello() *brlink.HelloBody {
	return &brlink.HelloBody{Version: brlink.ProtocolVersion, Compression: l.comp, Nonce: l.nonce, Node: l.cfg.Name}
}

func (l *linkState) sendHello(now time.Time) {
	l.queueCtl(brlink.Hello, l.hello())
	l.helloAt = now.Add(l.helloWait)
	l.helloWait = min(2*l.helloWait, l.cfg.HelloRetryMax)
}

// carrierEvent handles what the connection reports.
func (l *linkState) carrierEvent(e carrierEvent, now time.Time) {
	switch {
	case e.flow == flowOff:
		l.flowOn = false
	case e.flow == flowOn:
		l.flowOn = true
	case e.unreachable != nil:
		// While handshaking, HELLO is simply retried with backoff.
		if l.up {
			l.linkLost(e.unreachable, now)
		}
	case e.frame != nil:
		l.receive(e.frame, now)
	}
}

// receive handles one frame from the peer. It never trusts the frame:
// sizes are bounded before anything is allocated for them.
func (l *linkState) receive(b []byte, now time.Time) {
	l.b.framesIn.Add(1)
	l.b.bytesIn.Add(int64(len(b)))
	f, err := brlink.Decode(b)
	if err != nil {
		l.log.Debug("brlink: bad frame", "err", err)
		return
	}
	l.lastRx = now
	if !l.probeBy.IsZero() {
		l.probeBy = time.Time{}
		if l.up && !l.resync {
			l.awaitAck = false
		}
	}
	switch f.Type {
	case brlink.Hello:
		l.onHello(f, now)
	case brlink.HelloAck:
		l.onHelloAck(f, now)
	case brlink.Ack:
		if len(f.IDs) > 0 {
			l.emit(Event{Kind: Acked, IDs: f.IDs})
		}
	case brlink.Nack:
		l.emit(Event{Kind: Rejected, IDs: []brlink.ID{f.ID}, Err: nackError(f.Reason)})
	case brlink.Data:
		l.onData(f, now)
	}
}

func nackError(r uint8) error {
	switch r {
	case brlink.NackExpired:
		return errors.New("relay: BRLINK: the peer reports the item expired")
	case brlink.NackRefused:
		return errors.New("relay: BRLINK: the peer refused the item")
	}
	return fmt.Errorf("relay: BRLINK: the peer rejected the item (reason %d)", r)
}

func (l *linkState) learnPeer(h *brlink.HelloBody) {
	if l.peerKnown && l.peerComp != h.Compression {
		l.log.Info("brlink: peer compression changed", "from", l.peerComp, "to", h.Compression)
	}
	l.peerComp, l.peerKnown = h.Compression, true
}

func (l *linkState) onHello(f *brlink.Frame, now time.Time) {
	h, err := brlink.DecodeHello(f.Payload)
	if err != nil {
		l.log.Debug("brlink: bad HELLO", "err", err)
		return
	}
	l.learnPeer(h)
	restarted := l.peerNonce != 0 && h.Nonce != l.peerNonce
	if h.Nonce != l.peerNonce {
		l.linfl.forget() // a new peer session starts its streams afresh
	}
	l.peerNonce = h.Nonce
	// Answer every HELLO, repeats included: our earlier answer may be lost.
	ack := l.hello()
	ack.Echo = h.Nonce
	if restarted && l.up {
		// The peer started afresh: its streams restarted (the epoch shows
		// it), ours must too, and whatever it had from us is unconfirmed.
		l.log.Info("brlink: peer restarted", "peer", h.Node)
		l.clearQueue()
		l.queueCtl(brlink.HelloAck, ack)
		l.emit(Event{Kind: Up, Degraded: l.degraded()})
		return
	}
	l.queueCtl(brlink.HelloAck, ack)
}

func (l *linkState) onHelloAck(f *brlink.Frame, now time.Time) {
	h, err := brlink.DecodeHello(f.Payload)
	if err != nil {
		l.log.Debug("brlink: bad HELLO-ACK", "err", err)
		return
	}
	l.learnPeer(h)
	if h.Echo != l.nonce || !l.awaitAck {
		return // an answer to an earlier HELLO
	}
	if h.Nonce != l.peerNonce {
		l.linfl.forget()
	}
	l.peerNonce = h.Nonce
	l.awaitAck, l.probeBy = false, time.Time{}
	if l.resync {
		l.resync = false
		return
	}
	if !l.up {
		l.setUp(now)
	}
}

// onData reassembles, decompresses and delivers an item.
func (l *linkState) onData(f *brlink.Frame, now time.Time) {
	if int(f.Segments) > l.maxSegsIn() {
		l.log.Warn("brlink: item with too many segments dropped", "segments", f.Segments)
		return
	}
	deflated := f.Flags&brlink.FlagDeflate != 0
	mode := l.comp
	if l.peerKnown {
		mode = l.peerComp
	}
	if deflated && mode == brlink.CompressFrame {
		// Each frame decodes alone; reassemble what it inflates to.
		p, err := inflateFrame(f.Payload, l.cfg.MaxItem)
		if err != nil {
			l.log.Warn("brlink: DATA frame does not inflate", "err", err)
			l.nack(f.ID, brlink.NackRefused)
			return
		}
		g := *f
		g.Payload = p
		f = &g
	}
	payload, ok := l.reasm.Add(f)
	if !ok {
		return
	}
	if deflated && mode == brlink.CompressLink {
		p, err := l.linfl.inflate(f.Precedence, payload)
		switch {
		case errors.Is(err, errStale), errors.Is(err, errStreamBroken):
			// A restart is asked for already, or the peer made one: the
			// item comes again on the new stream.
			l.log.Debug("brlink: link stream", "err", err)
			return
		case err != nil:
			l.log.Warn("brlink: link stream", "err", err)
			l.askResync(now)
			return
		}
		payload = p
	} else if deflated && mode != brlink.CompressFrame {
		l.log.Warn("brlink: DEFLATE item but the peer announced no compression")
		return
	}
	if len(payload) > l.cfg.MaxItem {
		l.nack(f.ID, brlink.NackRefused)
		return
	}
	if !deflated && f.Segments == 1 {
		payload = append([]byte(nil), payload...) // the frame's buffer is the carrier's
	}
	it := &Item{ID: f.ID, Class: f.Class, Precedence: f.Precedence, Payload: payload}
	if f.Expires != 0 {
		it.Expires = time.Unix(int64(f.Expires), 0)
	}
	l.b.itemsIn.Add(1)
	id, acks, done := f.ID, l.b.acks, l.b.done
	l.emit(Event{Kind: Received, Item: it, Ack: func() {
		select {
		case acks <- id:
		case <-done:
		}
	}})
}

// maxSegsIn bounds the segment count of an incoming item by what MaxItem
// could need at a small MTU, so a hostile count cannot make us allocate.
func (l *linkState) maxSegsIn() int {
	return l.cfg.MaxItem/128 + 2
}

func (l *linkState) nack(id brlink.ID, reason uint8) {
	f := brlink.Frame{Type: brlink.Nack, Precedence: brlink.Override, Class: brlink.ClassCtl, Segments: 1, ID: id, Reason: reason}
	b, _ := brlink.Append(nil, &f) // valid by construction
	if len(l.ctl) >= maxCtl {
		return
	}
	l.ctl = append(l.ctl, txFrame{b: b, prec: brlink.Override})
}

// askResync: a link stream from the peer broke (a lost item). We act as
// if restarted: a HELLO with a new nonce makes the peer restart its
// streams and resend what we have not acknowledged, and since a new nonce
// always means new streams, ours restart too (Up: our relay resends).
func (l *linkState) askResync(now time.Time) {
	if l.conn == nil || !l.up || l.awaitAck {
		return // not up, or a HELLO with a fresh nonce is on its way
	}
	l.log.Warn("brlink: restarting the link streams")
	l.clearQueue()
	l.emit(Event{Kind: Up, Degraded: l.degraded()})
	l.nonce = rand.Uint64() | 1
	l.awaitAck, l.resync = true, true
	l.probeBy = now.Add(l.cfg.ProbeTimeout)
	l.helloWait = l.cfg.HelloRetry
	l.sendHello(now)
}
