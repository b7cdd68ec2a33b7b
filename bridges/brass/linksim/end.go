package linksim

import (
	"context"
	"net"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/sis"
)

// end is one simulated node: the goroutine running it owns the bound
// client's connection and state.
type end struct {
	sim     *Sim
	idx     int
	conns   chan net.Conn
	deliver chan pdu            // U_PDUs arriving over the air
	notices chan *sis.Primitive // confirms and rejections for our client
	flows   chan bool
}

func newEnd(s *Sim, i int) *end {
	return &end{sim: s, idx: i, conns: make(chan net.Conn), deliver: make(chan pdu),
		notices: make(chan *sis.Primitive, 256), flows: make(chan bool, 16)}
}

// flow tells the end's client to stop or resume (from the air goroutine).
func (e *end) flow(on bool) {
	select {
	case e.flows <- on:
	default: // a newer state follows; the buffer only fills if the end is stuck
	}
}

func (e *end) addr() sis.Addr {
	if e.idx == 0 {
		return e.sim.cfg.NodeA
	}
	return e.sim.cfg.NodeB
}

type connPrim struct {
	gen int
	p   *sis.Primitive
	err error
}

// session is the state of the connected client.
type session struct {
	gen     int
	conn    net.Conn
	out     chan []byte
	bound   bool
	sap     uint8
	service sis.Service
}

func (e *end) run(ctx context.Context) {
	log := e.sim.cfg.Logger.With("end", string(rune('A'+e.idx)))
	prims := make(chan connPrim, 64)
	var cur *session
	gen := 0
	flowOn := true
	drop := func() {
		if cur != nil {
			close(cur.out)
			cur.conn.Close()
			cur = nil
		}
	}
	defer drop()
	send := func(p *sis.Primitive) {
		if cur == nil {
			return
		}
		b, err := sis.Append(nil, p)
		if err != nil {
			log.Error("linksim: encode", "err", err)
			return
		}
		select {
		case cur.out <- b:
		default:
			log.Warn("linksim: dropping the client", "err", errSlow)
			drop()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-e.conns:
			if cur != nil {
				// One client per end: the SAP is in use.
				go func() {
					b, _ := sis.Append(nil, &sis.Primitive{Type: sis.BindRejected, Reason: sis.BindRejectSAPInUse})
					c.SetWriteDeadline(time.Now().Add(time.Second))
					c.Write(b)
					c.Close()
				}()
				continue
			}
			gen++
			cur = &session{gen: gen, conn: c, out: make(chan []byte, 1024)}
			go reader(ctx, c, gen, prims)
			go writer(c, cur.out)
		case cp := <-prims:
			if cur == nil || cp.gen != cur.gen {
				continue
			}
			if cp.err != nil {
				log.Info("linksim: client gone", "err", cp.err)
				drop()
				continue
			}
			e.handle(cur, cp.p, send, drop, flowOn)
		case on := <-e.flows:
			flowOn = on
			if cur != nil && cur.bound {
				t := sis.DataFlowOff
				if on {
					t = sis.DataFlowOn
				}
				send(&sis.Primitive{Type: t})
			}
		case n := <-e.notices:
			if cur != nil && cur.bound {
				send(n)
			}
		case p := <-e.deliver:
			e.arrive(cur, p, send)
		}
	}
}

func (e *end) handle(cur *session, p *sis.Primitive, send func(*sis.Primitive), drop func(), flowOn bool) {
	s := e.sim
	switch p.Type {
	case sis.BindRequest:
		if cur.bound || p.Service.Mode == sis.ModeDefault {
			send(&sis.Primitive{Type: sis.BindRejected, Reason: sis.BindRejectUnknown})
			return
		}
		cur.bound, cur.sap, cur.service = true, p.SAP, p.Service
		send(&sis.Primitive{Type: sis.BindAccepted, SAP: p.SAP, MTU: uint16(s.cfg.MTU)})
		if !flowOn {
			send(&sis.Primitive{Type: sis.DataFlowOff})
		}
	case sis.UnbindRequest:
		drop()
	case sis.KeepAlive:
		send(&sis.Primitive{Type: sis.KeepAlive})
	case sis.UnidataRequest, sis.ExpeditedUnidataRequest:
		if !cur.bound {
			return
		}
		svc := p.Service
		if svc.Mode == sis.ModeDefault {
			svc = cur.service
		}
		reject := func(reason uint8) {
			t := sis.UnidataRequestRejected
			if p.Type == sis.ExpeditedUnidataRequest {
				t = sis.ExpeditedUnidataRequestRejected
			}
			send(&sis.Primitive{Type: t, Reason: reason, SAP: p.SAP, Addr: p.Addr, Data: p.Data})
		}
		if len(p.Data) > s.cfg.MTU {
			reject(sis.RejectTooLarge)
			return
		}
		if p.Addr.Node != s.ends[1-e.idx].addr().Node {
			reject(sis.RejectNoResponse)
			return
		}
		u := pdu{from: e.idx, prio: int(p.Priority), arq: svc.Mode == sis.ModeARQ,
			confirm: svc.Confirm != sis.ConfirmNone, destSAP: p.SAP, srcSAP: cur.sap,
			expedited: p.Type == sis.ExpeditedUnidataRequest, data: p.Data}
		if u.expedited {
			u.prio = 16
		}
		select {
		case s.airs[e.idx].submit <- u:
		default:
			s.lost[e.idx].Add(1)
		}
	}
}

// arrive hands a U_PDU from the air to our client and answers the sender.
func (e *end) arrive(cur *session, p pdu, send func(*sis.Primitive)) {
	s := e.sim
	src := s.ends[p.from]
	if cur == nil || !cur.bound || cur.sap != p.destSAP {
		s.lost[p.from].Add(1)
		if p.confirm {
			src.notify(p, sis.UnidataRequestRejected, sis.RejectSAPNotBound, e.addr())
		}
		return
	}
	t, mode := sis.UnidataIndication, uint8(sis.ModeARQ)
	if !p.arq {
		mode = sis.ModeNonARQ
	}
	if p.expedited {
		t = sis.ExpeditedUnidataIndication
	}
	prio := uint8(p.prio)
	if p.expedited {
		prio = 0
	}
	send(&sis.Primitive{Type: t, Priority: prio, SAP: p.destSAP, Addr: e.addr(),
		TxMode: mode, SrcSAP: p.srcSAP, Src: src.addr(), Data: p.data})
	s.delivered[p.from].Add(1)
	if p.confirm {
		src.notify(p, sis.UnidataRequestConfirm, 0, e.addr())
	}
}

// notify queues a confirm or rejection for this end's client; it never blocks.
func (e *end) notify(p pdu, t sis.Type, reason uint8, dest sis.Addr) {
	if p.expedited {
		t += sis.ExpeditedUnidataRequestConfirm - sis.UnidataRequestConfirm
	}
	select {
	case e.notices <- &sis.Primitive{Type: t, Reason: reason, SAP: p.destSAP, Addr: dest, Data: p.data}:
	default:
	}
}

func reader(ctx context.Context, c net.Conn, gen int, out chan<- connPrim) {
	r := sis.NewReader(c, 0)
	for {
		p, err := r.Read()
		if sis.IsInvalid(err) {
			continue
		}
		select {
		case out <- connPrim{gen: gen, p: p, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func writer(c net.Conn, in <-chan []byte) {
	for b := range in {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(b); err != nil {
			c.Close()
			for range in {
			}
			return
		}
	}
}
