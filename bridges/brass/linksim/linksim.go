// Package linksim plays a pair of STANAG 5066 nodes joined by an HF link:
// a SIS server at each end, carrying U_PDUs between them at a set bit
// rate, latency, loss rate and outage schedule.
package linksim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/sis"
)

// Outage is a scheduled loss of the link, measured from the start.
type Outage struct {
	Start, Duration time.Duration
}

// ParseOutage reads "DURATION@START", e.g. "30s@60s".
func ParseOutage(s string) (Outage, error) {
	d, at, ok := strings.Cut(s, "@")
	if !ok {
		return Outage{}, fmt.Errorf("linksim: outage %q: want DURATION@START", s)
	}
	dur, err := time.ParseDuration(d)
	if err != nil || dur <= 0 {
		return Outage{}, fmt.Errorf("linksim: outage %q: bad duration", s)
	}
	start, err := time.ParseDuration(at)
	if err != nil || start < 0 {
		return Outage{}, fmt.Errorf("linksim: outage %q: bad start", s)
	}
	return Outage{Start: start, Duration: dur}, nil
}

func (o Outage) String() string { return o.Duration.String() + "@" + o.Start.String() }

// Config describes the simulated link.
type Config struct {
	ListenA, ListenB string   // SIS listen addresses of the two ends
	NodeA, NodeB     sis.Addr // node addresses (defaults 0.0.0.1 and 0.0.0.2)
	Rate             int      // bit/s each way (2400)
	Latency          time.Duration
	Loss             float64 // probability that one transmission of a U_PDU is lost
	Outages          []Outage
	Overhead         int // bytes added on air per U_PDU for lower-layer headers (0)
	Buffer           int // queued bytes per direction before S_DATA_FLOW_OFF (16384); ON again at half;
	// U_PDUs beyond twice that plus 16 MTUs are discarded (a client that ignores flow control)
	MTU    int // offered in S_BIND_ACCEPTED (2048)
	Seed   uint64
	Logger *slog.Logger
}

// Stats counts what crossed the link.
type Stats struct {
	AirBytes  [2]int64 // bytes transmitted A→B and B→A, retransmissions included
	Delivered [2]int64 // U_PDUs delivered
	Lost      [2]int64 // U_PDUs lost for good (non-ARQ) or dropped
}

// Sim is a running link simulator.
type Sim struct {
	cfg   Config
	lnA   net.Listener
	lnB   net.Listener
	start time.Time
	ends  [2]*end
	airs  [2]*air

	airBytes, delivered, lost [2]atomic.Int64
}

// New listens on both ends' addresses.
func New(cfg Config) (*Sim, error) {
	if cfg.Rate <= 0 {
		cfg.Rate = 2400
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 16384
	}
	if cfg.MTU <= 0 {
		cfg.MTU = sis.DefaultMTU
	}
	if cfg.NodeA == (sis.Addr{}) {
		cfg.NodeA = sis.Addr{Node: 1}
	}
	if cfg.NodeB == (sis.Addr{}) {
		cfg.NodeB = sis.Addr{Node: 2}
	}
	if cfg.Loss < 0 || cfg.Loss >= 1 {
		return nil, fmt.Errorf("linksim: loss %v: want 0 ≤ loss < 1", cfg.Loss)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg}
	var err error
	if s.lnA, err = net.Listen("tcp", cfg.ListenA); err != nil {
		return nil, fmt.Errorf("linksim: end A: %w", err)
	}
	if s.lnB, err = net.Listen("tcp", cfg.ListenB); err != nil {
		s.lnA.Close()
		return nil, fmt.Errorf("linksim: end B: %w", err)
	}
	return s, nil
}

// Addrs are the listening addresses of ends A and B.
func (s *Sim) Addrs() (a, b string) { return s.lnA.Addr().String(), s.lnB.Addr().String() }

// Stats returns the counters so far.
func (s *Sim) Stats() Stats {
	var st Stats
	for i := range 2 {
		st.AirBytes[i] = s.airBytes[i].Load()
		st.Delivered[i] = s.delivered[i].Load()
		st.Lost[i] = s.lost[i].Load()
	}
	return st
}

// Run carries traffic until ctx is cancelled; the outage schedule counts
// from its start.
func (s *Sim) Run(ctx context.Context) error {
	s.start = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rng := rand.New(rand.NewPCG(s.cfg.Seed, s.cfg.Seed^0x5066))
	for i := range 2 {
		s.ends[i] = newEnd(s, i)
		s.airs[i] = &air{sim: s, dir: i, submit: make(chan pdu, 1024),
			rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))}
	}
	var wg sync.WaitGroup
	for i, ln := range []net.Listener{s.lnA, s.lnB} {
		e := s.ends[i]
		wg.Add(3)
		go func() { defer wg.Done(); e.run(ctx) }()
		go func() { defer wg.Done(); s.airs[i].run(ctx) }()
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case e.conns <- c:
				case <-ctx.Done():
					c.Close()
					return
				}
			}
		}()
	}
	<-ctx.Done()
	s.lnA.Close()
	s.lnB.Close()
	wg.Wait()
	return nil
}

// outageAt says whether t is in an outage and, if so, when it ends.
func (s *Sim) outageAt(t time.Time) (bool, time.Time) {
	off := t.Sub(s.start)
	for _, o := range s.cfg.Outages {
		if off >= o.Start && off < o.Start+o.Duration {
			return true, s.start.Add(o.Start + o.Duration)
		}
	}
	return false, time.Time{}
}

// outageBetween says whether an outage overlaps [a, b).
func (s *Sim) outageBetween(a, b time.Time) bool {
	for _, o := range s.cfg.Outages {
		os, oe := s.start.Add(o.Start), s.start.Add(o.Start+o.Duration)
		if os.Before(b) && oe.After(a) {
			return true
		}
	}
	return false
}

// pdu is a U_PDU in the simulator.
type pdu struct {
	from      int
	prio      int // 16 for expedited
	arq       bool
	confirm   bool
	destSAP   uint8
	srcSAP    uint8
	expedited bool
	data      []byte
}

// air is one direction of the link: a priority queue and the transmitter.
type air struct {
	sim    *Sim
	dir    int // 0: A→B, 1: B→A
	submit chan pdu
	rng    *rand.Rand
}

func (a *air) run(ctx context.Context) {
	s := a.sim
	log := s.cfg.Logger.With("dir", dirName(a.dir))
	var queue []pdu
	queued := 0
	flowOff := false
	var cur *pdu
	var curStart time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	setFlow := func() {
		switch {
		case !flowOff && queued > s.cfg.Buffer:
			flowOff = true
			s.ends[a.dir].flow(false)
		case flowOff && queued <= s.cfg.Buffer/2:
			flowOff = false
			s.ends[a.dir].flow(true)
		}
	}
	next := func() {
		if cur != nil || armed || len(queue) == 0 {
			return
		}
		now := time.Now()
		if in, end := s.outageAt(now); in {
			timer.Reset(end.Sub(now))
			armed = true
			return
		}
		p := queue[0]
		queue = queue[1:]
		queued -= len(p.data)
		setFlow()
		cur, curStart = &p, now
		bits := (len(p.data) + s.cfg.Overhead) * 8
		timer.Reset(time.Duration(float64(bits) / float64(s.cfg.Rate) * float64(time.Second)))
		armed = true
	}
	deliveries := make(chan delivery, 4096)
	go a.deliverer(ctx, deliveries)
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case p := <-a.submit:
			if queued+len(p.data) > 2*s.cfg.Buffer+16*s.cfg.MTU {
				// Sent after S_DATA_FLOW_OFF: may be discarded silently.
				s.lost[a.dir].Add(1)
				log.Warn("linksim: buffer full, U_PDU dropped", "bytes", len(p.data))
				continue
			}
			queue = insert(queue, p, false)
			queued += len(p.data)
			setFlow()
			next()
		case now := <-timer.C:
			armed = false
			if cur != nil {
				p := *cur
				cur = nil
				s.airBytes[a.dir].Add(int64(len(p.data) + s.cfg.Overhead))
				lost := s.outageBetween(curStart, now) || (s.cfg.Loss > 0 && a.rng.Float64() < s.cfg.Loss)
				switch {
				case !lost:
					select {
					case deliveries <- delivery{at: now.Add(s.cfg.Latency), p: p}:
					default:
						s.lost[a.dir].Add(1)
					}
				case p.arq: // ARQ repeats it: back to the front of its precedence
					queue = insert(queue, p, true)
					queued += len(p.data)
				default:
					s.lost[a.dir].Add(1)
				}
			}
			next()
		}
	}
}

// insert puts p after the U_PDUs of higher priority and, unless front,
// after those of its own.
func insert(q []pdu, p pdu, front bool) []pdu {
	i := len(q)
	for i > 0 && (q[i-1].prio < p.prio || front && q[i-1].prio == p.prio) {
		i--
	}
	q = append(q, pdu{})
	copy(q[i+1:], q[i:])
	q[i] = p
	return q
}

type delivery struct {
	at time.Time
	p  pdu
}

// deliverer hands U_PDUs to the far end once their latency has passed.
func (a *air) deliverer(ctx context.Context, in <-chan delivery) {
	far := a.sim.ends[1-a.dir]
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-in:
			if w := time.Until(d.at); w > 0 {
				t := time.NewTimer(w)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			select {
			case far.deliver <- d.p:
			case <-ctx.Done():
				return
			}
		}
	}
}

func dirName(i int) string {
	if i == 0 {
		return "A→B"
	}
	return "B→A"
}

// errSlow closes a client that does not read what its node sends.
var errSlow = errors.New("linksim: client not reading")
