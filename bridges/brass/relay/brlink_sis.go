package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/sis"
)

// DefaultSAP is the SIS service access point BRLINK binds by default
// (13, unassigned in STANAG 5066).
const DefaultSAP = 13

// SISConfig configures a BRLINK bearer over a STANAG 5066 node's SIS.
type SISConfig struct {
	BRLINKConfig
	// Node is the TCP address of the local node's SIS (host:port).
	Node string
	// Peer is the far node's address; a group address makes the bearer
	// broadcast (Up once bound, no HELLO-ACK awaited).
	Peer sis.Addr
	// SAP is bound locally and PeerSAP addressed on the far node (both 13
	// when 0).
	SAP, PeerSAP uint8
	Rank         uint8
	// NonARQ sends without node ARQ (broadcast, EMCON-friendly), repeated
	// MinRetx times by the node (2); only frame compression then works,
	// as frames may be lost.
	NonARQ  bool
	MinRetx uint8
	// TTL is the UNIDATA time to live in seconds (20 bits; 0: the node's
	// maximum).
	TTL uint32
}

// NewSISBearer makes a BRLINK bearer over the SIS of the node at
// cfg.Node. Defaults beyond BRLINKConfig's: Rate 2,400 bit/s (set it to
// the waveform's rate), compression "link" with ARQ and "frame" without.
func NewSISBearer(cfg SISConfig) (*BRLINKBearer, error) {
	if cfg.Node == "" {
		return nil, errors.New("relay: BRLINK SIS: no node address")
	}
	if cfg.SAP == 0 {
		cfg.SAP = DefaultSAP
	}
	if cfg.PeerSAP == 0 {
		cfg.PeerSAP = cfg.SAP
	}
	if cfg.SAP > 15 || cfg.PeerSAP > 15 || cfg.Rank > 14 {
		return nil, fmt.Errorf("relay: BRLINK SIS: SAP %d, peer SAP %d, rank %d out of range", cfg.SAP, cfg.PeerSAP, cfg.Rank)
	}
	if cfg.Rate == 0 {
		cfg.Rate = 2400
	}
	if cfg.MinRetx == 0 {
		cfg.MinRetx = 2
	}
	if cfg.Compression == "" {
		cfg.Compression = "link"
		if cfg.NonARQ || cfg.Peer.Group {
			cfg.Compression = "frame"
		}
	}
	svc := sis.Service{Mode: sis.ModeARQ, Confirm: sis.ConfirmNode}
	if cfg.NonARQ {
		svc = sis.Service{Mode: sis.ModeNonARQ, MinRetx: min(cfg.MinRetx, 15)}
	}
	c := &sisCarrier{cfg: cfg, svc: svc}
	traits := carrierTraits{ordered: !cfg.NonARQ && !cfg.Peer.Group, broadcast: cfg.Peer.Group,
		broadcastFl: cfg.NonARQ || cfg.Peer.Group}
	return newBRLINKBearer(cfg.BRLINKConfig, traits, c)
}

type sisCarrier struct {
	cfg SISConfig
	svc sis.Service
}

func (c *sisCarrier) Dial(ctx context.Context) (brlinkConn, error) {
	cl, err := sis.Dial(ctx, c.cfg.Node, sis.ClientConfig{SAP: c.cfg.SAP, Rank: c.cfg.Rank, Service: c.svc,
		Logger: c.cfg.Logger})
	if err != nil {
		var be *sis.BindError
		if errors.As(err, &be) && be.Reason == sis.BindRejectSAPInUse {
			c.cfg.Logger.Error("brlink: SAP already bound at the node: another client holds it", "sap", c.cfg.SAP)
		}
		return nil, fmt.Errorf("relay: BRLINK SIS: %w", err)
	}
	if cl.MTU() < minMTU {
		cl.Close()
		return nil, fmt.Errorf("relay: BRLINK SIS: node MTU %d below the %d BRLINK needs", cl.MTU(), minMTU)
	}
	s := &sisConn{c: cl, cfg: &c.cfg, svc: c.svc, events: make(chan carrierEvent), quit: make(chan struct{})}
	go s.read()
	return s, nil
}

func (c *sisCarrier) Close() {}

// sisConn is one bound SIS client.
type sisConn struct {
	c      *sis.Client
	cfg    *SISConfig
	svc    sis.Service
	events chan carrierEvent
	quit   chan struct{}
	close  sync.Once
	err    error // set by read before it closes events
}

func (s *sisConn) MTU() int                    { return s.c.MTU() }
func (s *sisConn) Events() <-chan carrierEvent { return s.events }
func (s *sisConn) Err() error                  { return s.err }

func (s *sisConn) Close() {
	s.close.Do(func() {
		close(s.quit)
		s.c.Close()
	})
}

func (s *sisConn) Write(ctx context.Context, frame []byte, p brlink.Precedence) error {
	err := s.c.Send(ctx, sis.Unidata{Dest: s.cfg.Peer, DestSAP: s.cfg.PeerSAP, Priority: p.SISPriority(),
		TTL: s.cfg.TTL, Data: frame})
	if err != nil {
		return fmt.Errorf("relay: BRLINK SIS: %w", err)
	}
	return nil
}

// read turns the node's primitives into carrier events.
func (s *sisConn) read() {
	defer close(s.events)
	log := s.cfg.Logger
	for p := range s.c.Events() {
		var e carrierEvent
		switch p.Type {
		case sis.UnidataIndication, sis.ExpeditedUnidataIndication:
			switch {
			case p.SAP != s.cfg.SAP:
				continue
			case p.TxMode == sis.ModeNonARQErrors && (len(p.Errors) > 0 || len(p.NotRx) > 0):
				log.Debug("brlink: damaged U_PDU dropped", "from", p.Src)
				continue
			case !s.cfg.Peer.Group && p.Src.Node != s.cfg.Peer.Node:
				log.Debug("brlink: U_PDU from another node ignored", "from", p.Src)
				continue
			}
			e.frame = p.Data
		case sis.DataFlowOff:
			e.flow = flowOff
		case sis.DataFlowOn:
			e.flow = flowOn
		case sis.UnidataRequestRejected, sis.ExpeditedUnidataRequestRejected:
			switch p.Reason {
			case sis.RejectTTLExpired, sis.RejectSAPNotBound, sis.RejectNoResponse:
				// The node could not deliver: the peer is out of reach (or
				// its relay is not running), and the frame is lost.
				e.unreachable = fmt.Errorf("relay: BRLINK SIS: node %s unreachable (%s, reason %d)", s.cfg.Peer, p.Type, p.Reason)
			default:
				log.Error("brlink: node rejected a U_PDU", "reason", p.Reason, "bytes", len(p.Data))
				continue
			}
		default:
			continue
		}
		select {
		case s.events <- e:
		case <-s.quit:
			s.err = errors.New("relay: BRLINK SIS: closed")
			return
		}
	}
	s.err = fmt.Errorf("relay: BRLINK SIS: %w", s.c.Err())
}
