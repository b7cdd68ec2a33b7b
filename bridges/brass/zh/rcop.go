package zh

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/relay"
	"github.com/aldis-im/aldis/bridges/brass/sis"
)

// RCOPHeaderLen is the size of the Annex F client transport header that
// starts every U_PDU (PROTOCOLS.md §2.4).
const RCOPHeaderLen = 6

// DefaultSAP is the SAP STANAG 5066 Table F-1 gives RCOP, and XEP-0365
// v0.3 recommends (v0.2.1's "SAP 2" is an erratum, PROTOCOLS.md §8).
const DefaultSAP = 6

// RCOPHeader is the 6-byte RCOP/UDOP header.
type RCOPHeader struct {
	ConnID  uint8  // 0–15
	PDUID   uint8  // increments per U_PDU, mod 256
	Segment uint16 // 0: one stanza is one U_PDU
	AppID   uint16
}

// AppendRCOP appends the header h and then data.
func AppendRCOP(b []byte, h RCOPHeader, data []byte) []byte {
	b = append(b, h.ConnID<<4, h.PDUID)
	b = binary.BigEndian.AppendUint16(b, h.Segment)
	b = binary.BigEndian.AppendUint16(b, h.AppID)
	return append(b, data...)
}

// ParseRCOP splits a U_PDU into its header and application data. The
// reserved low nibble of byte 0 is ignored, not refused: it carries
// nothing, and a peer that sets it should still be heard.
func ParseRCOP(b []byte) (RCOPHeader, []byte, error) {
	if len(b) < RCOPHeaderLen {
		return RCOPHeader{}, nil, fmt.Errorf("zh: RCOP U_PDU of %d bytes, shorter than its header", len(b))
	}
	h := RCOPHeader{ConnID: b[0] >> 4, PDUID: b[1],
		Segment: binary.BigEndian.Uint16(b[2:]), AppID: binary.BigEndian.Uint16(b[4:])}
	return h, b[RCOPHeaderLen:], nil
}

// parseUPDU turns a received U_PDU into an item: the header stripped,
// the stanza parsed within maxStanza bytes and its addressing checked
// (the peer's domains as from, ours as to).
func parseUPDU(b []byte, maxStanza int, peer, local domainSet) (*relay.Item, RCOPHeader, error) {
	h, data, err := ParseRCOP(b)
	if err != nil {
		return nil, h, err
	}
	el, err := parseStanza(data, maxStanza)
	if err != nil {
		return nil, h, err
	}
	if !isStanza(el) {
		return nil, h, fmt.Errorf("zh: <%.64s/> in %.64q is not a stanza", el.Name, el.Space)
	}
	if cond := checkAddressing(el, peer, local); cond != "" {
		return nil, h, fmt.Errorf("zh: %s: from %.64q to %.64q", cond, el.Attr("from"), el.Attr("to"))
	}
	return receivedItem(el), h, nil
}

// RCOPConfig is one XEP-0365 (v0.2.1) peer reached through a STANAG 5066
// SIS node (PROTOCOLS.md §2.2, s5066-rcop). Zero values take the
// defaults noted.
type RCOPConfig struct {
	Name    string
	Node    string   // the SIS node's host:port (IANA port 5066)
	Peer    sis.Addr // the peer's 5066 node address
	SAP     uint8    // our SAP (0 means DefaultSAP)
	PeerSAP uint8    // the peer's SAP (0 means the same as ours)
	ConnID  uint8    // RCOP connection ID, 0–15 (XEP-0365 recommends 0)
	AppID   uint16   // RCOP application identifier; none is registered for XMPP (0)
	// ClientConfirm asks for CLIENT DELIVERY confirmation (the peer's
	// server got the stanza) instead of NODE DELIVERY (its node did).
	ClientConfirm bool
	TTL           uint32 // UNIDATA time to live, 20 bits; 0: the node's maximum

	LocalDomains []string
	PeerDomains  []string

	Window     int           // U_PDUs sent and not yet confirmed (16, at most 128 so IDs stay unique)
	SendQueue  int           // items queued in the bearer (64)
	RetryDelay time.Duration // before resending after a transient rejection (30 s)
	MinBackoff time.Duration // first reconnection delay (1 s)
	MaxBackoff time.Duration // longest (2 min)
	Logger     *slog.Logger
}

// RCOP carries one stanza per U_PDU over a SIS connection in ARQ mode,
// with no XEP-0198, XEP-0199 or whitespace keepalives (XEP-0365 v0.2.1);
// it implements relay.Bearer. Delivery confirmations become Acked.
type RCOP struct {
	cfg         RCOPConfig
	local, peer domainSet
	log         *slog.Logger
	reqs        chan sendReq
	stopped     chan struct{}
	running     atomic.Bool
}

// NewRCOP checks the configuration and returns the bearer; Run starts it.
func NewRCOP(cfg RCOPConfig) (*RCOP, error) {
	if cfg.SAP == 0 {
		cfg.SAP = DefaultSAP
	}
	if cfg.PeerSAP == 0 {
		cfg.PeerSAP = cfg.SAP
	}
	defInt(&cfg.Window, 16)
	defInt(&cfg.SendQueue, 64)
	defDur(&cfg.RetryDelay, 30*time.Second)
	defDur(&cfg.MinBackoff, time.Second)
	defDur(&cfg.MaxBackoff, 2*time.Minute)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Node == "":
		return nil, fmt.Errorf("zh: peer %s: no SIS node address", cfg.Name)
	case cfg.SAP > 15 || cfg.PeerSAP > 15 || cfg.ConnID > 15:
		return nil, fmt.Errorf("zh: peer %s: SAP and connection ID are 0–15", cfg.Name)
	case cfg.Window > 128:
		return nil, fmt.Errorf("zh: peer %s: window %d: at most 128 so U_PDU IDs stay unique", cfg.Name, cfg.Window)
	case cfg.TTL >= 1<<20:
		return nil, fmt.Errorf("zh: peer %s: TTL is 20 bits", cfg.Name)
	}
	local, err := newDomainSet("local", cfg.LocalDomains)
	if err != nil {
		return nil, fmt.Errorf("zh: peer %s: %w", cfg.Name, err)
	}
	peer, err := newDomainSet("peer", cfg.PeerDomains)
	if err != nil {
		return nil, fmt.Errorf("zh: peer %s: %w", cfg.Name, err)
	}
	return &RCOP{cfg: cfg, local: local, peer: peer,
		log:  cfg.Logger.With("peer", cfg.Name, "transport", "s5066-rcop", "node", cfg.Node),
		reqs: make(chan sendReq), stopped: make(chan struct{})}, nil
}

// Send queues one stanza. It fails with ErrDown while the SIS node is
// not bound, with relay.ErrTooLarge for a stanza over the MTU less the
// RCOP header (the relay bounces it), and with ErrBadItem for a payload
// the peer would refuse.
func (r *RCOP) Send(ctx context.Context, it *relay.Item) error {
	if len(it.Payload) > sis.MaxSize-RCOPHeaderLen {
		return fmt.Errorf("zh: %d bytes: %w", len(it.Payload), relay.ErrTooLarge)
	}
	if err := checkOutgoing(it.Payload, sis.MaxSize, r.local, r.peer); err != nil {
		return err
	}
	req := sendReq{it: it, reply: make(chan error, 1)}
	select {
	case r.reqs <- req:
		return <-req.reply
	case <-ctx.Done():
		return fmt.Errorf("zh: send: %w", ctx.Err())
	case <-r.stopped:
		return relay.ErrDown
	}
}

// pending is a U_PDU handed to the node and not yet confirmed.
type pending struct {
	it   *relay.Item
	id   uint8
	data []byte
}

type heldItem struct {
	it *relay.Item
	at time.Time
}

type bindResult struct {
	c   *sis.Client
	err error
}

// rcopState is what the Run goroutine owns.
type rcopState struct {
	client   *sis.Client
	mtu      int // of the current bind, or the last one while down
	txq      []*relay.Item
	inflight []*pending
	held     []heldItem // waiting out RetryDelay
	nextID   uint8
	dialing  bool
	armed    bool
	redial   *time.Timer
	retry    *time.Timer
	bo       backoff
	evq      evQueue
}

// Run keeps the SIS connection bound until ctx ends.
func (r *RCOP) Run(ctx context.Context, ev chan<- relay.Event) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("zh: Run called twice")
	}
	defer close(r.stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	binds := make(chan bindResult)
	st := &rcopState{redial: time.NewTimer(0), armed: true, retry: time.NewTimer(time.Hour),
		bo: backoff{min: r.cfg.MinBackoff, max: r.cfg.MaxBackoff}, evq: evQueue{max: 256}}
	st.retry.Stop()
	defer st.redial.Stop()
	defer st.retry.Stop()
	defer func() {
		if st.client != nil {
			st.client.Close()
		}
	}()
	for {
		r.pump(ctx, st)
		var events <-chan *sis.Primitive
		var done <-chan struct{}
		if st.client != nil {
			done = st.client.Done()
			if !st.evq.full() {
				events = st.client.Events()
			}
		}
		var reqs chan sendReq
		if st.client == nil || len(st.txq) < r.cfg.SendQueue {
			reqs = r.reqs
		}
		select {
		case <-ctx.Done():
			return nil
		case req := <-reqs:
			req.reply <- r.accept(st, req.it)
		case p, ok := <-events:
			if ok {
				r.handle(st, p)
			}
		case <-done:
			err := st.client.Err()
			r.log.Warn("zh: SIS connection lost", "err", err)
			st.client = nil
			st.txq, st.inflight, st.held = nil, nil, nil
			st.evq.push(relay.Event{Kind: relay.Down, Err: fmt.Errorf("zh: SIS node: %w", err)})
			st.redial.Reset(st.bo.next())
			st.armed = true
		case <-st.redial.C:
			st.armed = false
			st.dialing = true
			wg.Go(func() { r.bind(ctx, binds) })
		case b := <-binds:
			st.dialing = false
			if b.err != nil {
				var be *sis.BindError
				if errors.As(b.err, &be) && be.Reason == sis.BindRejectSAPInUse {
					r.log.Error("zh: SAP already in use at the node", "sap", r.cfg.SAP)
				}
				wait := st.bo.next()
				r.log.Warn("zh: SIS bind failed", "err", b.err, "retry_in", wait.Round(time.Millisecond))
				st.redial.Reset(wait)
				st.armed = true
				continue
			}
			st.client, st.mtu = b.c, b.c.MTU()
			st.bo.reset()
			r.log.Info("zh: link up", "mtu", st.mtu, "peer_node", r.cfg.Peer.String())
			st.evq.push(relay.Event{Kind: relay.Up})
		case now := <-st.retry.C:
			r.release(st, now)
		case st.evq.out(ev) <- st.evq.head():
			st.evq.pop()
		}
	}
}

func (r *RCOP) service() sis.Service {
	s := sis.Service{Mode: sis.ModeARQ, Confirm: sis.ConfirmNode}
	if r.cfg.ClientConfirm {
		s.Confirm = sis.ConfirmClient
	}
	return s
}

func (r *RCOP) bind(ctx context.Context, out chan<- bindResult) {
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := sis.Dial(bctx, r.cfg.Node, sis.ClientConfig{SAP: r.cfg.SAP, Service: r.service(),
		SendQueue: r.cfg.Window + 1, EventQueue: 256, Logger: r.cfg.Logger})
	select {
	case out <- bindResult{c, err}:
	case <-ctx.Done():
		if c != nil {
			c.Close()
		}
	}
}

// accept answers a Send.
func (r *RCOP) accept(st *rcopState, it *relay.Item) error {
	if st.mtu > 0 && len(it.Payload)+RCOPHeaderLen > st.mtu {
		return fmt.Errorf("zh: %d bytes, SIS MTU %d less the RCOP header: %w", len(it.Payload), st.mtu, relay.ErrTooLarge)
	}
	if st.client == nil {
		return relay.ErrDown
	}
	st.txq = append(st.txq, it)
	return nil
}

// pump hands queued stanzas to the node, one U_PDU each, while the
// confirmation window has room. The client's queue holds the whole
// window, so its Send does not block.
func (r *RCOP) pump(ctx context.Context, st *rcopState) {
	for st.client != nil && len(st.txq) > 0 && len(st.inflight) < r.cfg.Window {
		it := st.txq[0]
		st.txq[0] = nil
		st.txq = st.txq[1:]
		p := &pending{it: it, id: st.nextID,
			data: AppendRCOP(nil, RCOPHeader{ConnID: r.cfg.ConnID, PDUID: st.nextID, AppID: r.cfg.AppID}, it.Payload)}
		st.nextID++
		u := sis.Unidata{Dest: r.cfg.Peer, DestSAP: r.cfg.PeerSAP, Priority: it.Precedence.SISPriority(),
			Service: r.service(), TTL: r.cfg.TTL, Data: p.data}
		if err := st.client.Send(ctx, u); err != nil {
			// The client stopped; its Done case reports the loss.
			r.log.Debug("zh: U_PDU not queued", "err", err)
			return
		}
		st.inflight = append(st.inflight, p)
	}
	if len(st.txq) == 0 {
		st.txq = nil
	}
}

// match finds the in-flight U_PDU a confirm or rejection names by the
// (first bytes of the) U_PDU it returns.
func (st *rcopState) match(data []byte) *pending {
	if len(data) < 2 {
		return nil
	}
	for i, p := range st.inflight {
		if p.id == data[1] && bytes.HasPrefix(p.data, data) {
			st.inflight = append(st.inflight[:i], st.inflight[i+1:]...)
			return p
		}
	}
	return nil
}

func (r *RCOP) handle(st *rcopState, p *sis.Primitive) {
	switch p.Type {
	case sis.UnidataIndication, sis.ExpeditedUnidataIndication:
		if p.Src.Node != r.cfg.Peer.Node || p.SrcSAP != r.cfg.PeerSAP {
			r.log.Warn("zh: U_PDU from an unexpected node or SAP dropped", "src", p.Src.String(), "sap", p.SrcSAP)
			return
		}
		if p.TxMode == sis.ModeNonARQErrors && (len(p.Errors) > 0 || len(p.NotRx) > 0) {
			r.log.Warn("zh: damaged U_PDU dropped", "bytes", len(p.Data))
			return
		}
		it, h, err := parseUPDU(p.Data, max(st.mtu, sis.DefaultMTU), r.peer, r.local)
		if err != nil {
			// No stream to send an error on: drop and log.
			r.log.Warn("zh: stanza dropped", "err", err)
			return
		}
		if h.Segment != 0 {
			r.log.Debug("zh: RCOP segment number not 0", "segment", h.Segment)
		}
		st.evq.push(relay.Event{Kind: relay.Received, Item: it})
	case sis.UnidataRequestConfirm, sis.ExpeditedUnidataRequestConfirm:
		pd := st.match(p.Data)
		if pd == nil {
			r.log.Debug("zh: confirmation for no U_PDU in flight", "bytes", len(p.Data))
			return
		}
		st.evq.push(relay.Event{Kind: relay.Acked, IDs: []brlink.ID{pd.it.ID}})
	case sis.UnidataRequestRejected, sis.ExpeditedUnidataRequestRejected:
		pd := st.match(p.Data)
		if pd == nil {
			r.log.Debug("zh: rejection for no U_PDU in flight", "reason", p.Reason)
			return
		}
		r.rejected(st, pd, p.Reason)
	case sis.SubnetAvailability:
		r.log.Info("zh: subnet availability", "status", p.Status, "reason", p.Reason)
	}
}

// rejected maps an S_UNIDATA_REQUEST_REJECTED reason: the U_PDU is
// refused for good, or the whole stanza is sent again after RetryDelay
// (XEP-0365: on delivery failure the whole PDU is retransmitted).
func (r *RCOP) rejected(st *rcopState, pd *pending, reason uint8) {
	var err error
	switch reason {
	case sis.RejectTooLarge:
		err = fmt.Errorf("zh: the node refused %d bytes: %w", len(pd.data), relay.ErrTooLarge)
	case sis.RejectTTLExpired:
		err = errors.New("zh: the node's time to live expired")
	case sis.RejectModeUnset:
		err = errors.New("zh: the node says no transmission mode was set")
	}
	now := time.Now()
	if err == nil && !pd.it.Expires.IsZero() && !now.Before(pd.it.Expires) {
		err = errors.New("zh: expired while the peer was unreachable")
	}
	if err != nil {
		r.log.Warn("zh: stanza rejected", "reason", reason, "err", err)
		st.evq.push(relay.Event{Kind: relay.Rejected, IDs: []brlink.ID{pd.it.ID}, Err: err})
		return
	}
	r.log.Info("zh: U_PDU rejected; resending later", "reason", reason, "in", r.cfg.RetryDelay)
	st.held = append(st.held, heldItem{it: pd.it, at: now.Add(r.cfg.RetryDelay)})
	if len(st.held) == 1 {
		st.retry.Reset(r.cfg.RetryDelay)
	}
}

// release puts the items whose delay has passed back at the front of
// the queue, in their original order.
func (r *RCOP) release(st *rcopState, now time.Time) {
	var due []*relay.Item
	keep := st.held[:0]
	for _, h := range st.held {
		if !now.Before(h.at) {
			due = append(due, h.it)
		} else {
			keep = append(keep, h)
		}
	}
	clear(st.held[len(keep):])
	st.held = keep
	st.txq = append(due, st.txq...)
	if len(st.held) > 0 {
		st.retry.Reset(time.Until(st.held[0].at))
	}
}
