package ircbench

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

const (
	probeEvery = 500 * time.Millisecond // a new round of probes while the link is not ready
	quietFor   = time.Second            // no traffic at all for this long: the servers are idle
	maxSettle  = 15 * time.Second       // bound on waiting for them to be idle
	stallTimes = 3                      // a phase fails after stallTimes × LostAfter without a delivery
)

// bench is the state of one run: the clock, the run's tag and the phase being counted, which
// every receiver's reader goroutine looks up for each message it gets.
type bench struct {
	cfg    Config
	base   time.Time // origin of the bench clock
	tag    string    // random per run: messages of other runs never count
	pad    string
	phases atomic.Int64
	cur    atomic.Pointer[phase]
	quiet  time.Duration // quietFor; shorter in tests

	logMu sync.Mutex
}

func newBench(cfg Config) *bench {
	return &bench{cfg: cfg, base: time.Now(), tag: newTag(), pad: strings.Repeat("x", maxBody), quiet: quietFor}
}

// now is the bench clock: monotonic nanoseconds since the run began.
func (b *bench) now() int64 { return int64(time.Since(b.base)) }

func (b *bench) logf(format string, args ...any) {
	if b.cfg.Log == nil {
		return
	}
	b.logMu.Lock()
	defer b.logMu.Unlock()
	fmt.Fprintf(b.cfg.Log, "ircbench: "+format+"\n", args...)
}

// onXMPP counts a message an XMPP user received: a delivery when the phase runs from IRC, a
// bounce of its own when it runs to IRC.
func (b *bench) onXMPP(m loadgen.Received) {
	now := b.now()
	ph := b.cur.Load()
	if ph == nil || m.Body == nil {
		return
	}
	seq, ok := ph.seq(m.Body)
	if !ok {
		return
	}
	switch {
	case bytes.Equal(m.Type, []byte("error")):
		if ph.dir == XMPPToIRC {
			ph.bounce(seq)
		}
	case ph.dir == IRCToXMPP:
		ph.deliver(m.Session, seq, now)
	}
}

// onIRC returns the text handler of IRC user r.
func (b *bench) onIRC(r int) func(text string) {
	return func(text string) {
		now := b.now()
		ph := b.cur.Load()
		if ph == nil || ph.dir != XMPPToIRC {
			return
		}
		if seq, ok := ph.seq([]byte(text)); ok {
			ph.deliver(r, seq, now)
		}
	}
}

func (b *bench) newPhase(dir Direction, name string, n, receivers int) *phase {
	return newPhase(dir, name, fmt.Appendf(nil, "%s.%d ", b.tag, b.phases.Add(1)), n, receivers)
}

// run drives the scenario over the two sides once their users are in the room and the channel.
func (b *bench) run(ctx context.Context, x, irc side) (Result, error) {
	cfg := &b.cfg
	res := Result{
		Room: cfg.Room, Channel: cfg.Channel, IRCAddr: cfg.IRCAddr,
		XMPPUsers: x.Len(), IRCUsers: irc.Len(), Window: cfg.Window,
	}
	for _, p := range cfg.Processes {
		res.Processes = append(res.Processes, p.Name)
	}
	begin := time.Now()
	deadline := begin.Add(cfg.ReadyTimeout)
	if err := b.probe(ctx, IRCToXMPP, irc, x, deadline); err != nil {
		return res, err
	}
	if err := b.probe(ctx, XMPPToIRC, x, irc, deadline); err != nil {
		return res, err
	}
	res.Ready = time.Since(begin)
	b.logf("the gateway carries messages both ways (after %v)", res.Ready.Round(time.Millisecond))
	for _, spec := range []struct {
		dir       Direction
		name      string
		n, window int
		from, to  side
	}{
		{IRCToXMPP, "latency", cfg.LatencyMessages, 1, irc, x},
		{XMPPToIRC, "latency", cfg.LatencyMessages, 1, x, irc},
		{IRCToXMPP, "throughput", cfg.Burst, cfg.Window, irc, x},
		{XMPPToIRC, "throughput", cfg.Burst, cfg.Window, x, irc},
	} {
		if err := b.settle(ctx, x, irc); err != nil {
			return res, err
		}
		p, err := b.measure(ctx, spec.dir, spec.name, spec.n, spec.window, spec.from, spec.to)
		if p.Sent > 0 {
			res.Phases = append(res.Phases, p)
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// probe has every user of from say something in turn, a round every probeEvery, until some
// message of each has reached every user of to, or deadline.
func (b *bench) probe(ctx context.Context, dir Direction, from, to side, deadline time.Time) error {
	senders := from.Len()
	rounds := max(int(time.Until(deadline)/probeEvery)+2, 1)
	ph := b.newPhase(dir, "probe", rounds*senders, to.Len())
	b.cur.Store(ph)
	defer b.cur.Store(nil)
	ready := func(sentRounds int) bool {
	next:
		for i := range senders {
			for r := range sentRounds {
				if ph.gotBy(r*senders+i) == ph.receivers {
					continue next
				}
			}
			return false
		}
		return true
	}
	timer := time.NewTimer(probeEvery)
	defer timer.Stop()
	for r := 0; ; r++ {
		if r < rounds {
			for i := range senders {
				k := r*senders + i
				ph.markSent(k, b.now())
				if err := from.Send(i, ph.text(k, b.cfg.XMPP.BodySize, b.pad)); err != nil {
					return fmt.Errorf("ircbench: %w", err)
				}
			}
		}
		sentRounds := min(r+1, rounds)
		timer.Reset(probeEvery)
	wait:
		for {
			if ready(sentRounds) {
				return nil
			}
			if time.Now().After(deadline) {
				return b.linkError(ph, from, to, sentRounds)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("ircbench: waiting for the gateway: %w", ctx.Err())
			case <-ph.progress:
			case <-timer.C:
				break wait
			}
		}
	}
}

// linkError says what is missing when the gateway did not carry the probes.
func (b *bench) linkError(ph *phase, from, to side, sentRounds int) error {
	var where string
	if ph.dir == IRCToXMPP {
		where = fmt.Sprintf("from %s on %s to the room %s", b.cfg.Channel, b.cfg.IRCAddr, b.cfg.Room)
	} else {
		where = fmt.Sprintf("from the room %s to %s on %s", b.cfg.Room, b.cfg.Channel, b.cfg.IRCAddr)
	}
	if ph.delivered.Load() == 0 {
		msg := fmt.Sprintf("ircbench: no message went %s within %v: is the room linked to the channel, and is the gateway in both?",
			where, b.cfg.ReadyTimeout)
		if n := ph.errors.Load(); n > 0 {
			msg += fmt.Sprintf(" (%d came back as errors)", n)
		}
		return fmt.Errorf("%s", msg)
	}
	var deaf, unheard []string
	for r := range to.Len() {
		if ph.receiverCount(r) == 0 {
			deaf = append(deaf, to.Name(r))
		}
	}
	senders := from.Len()
	for i := range senders {
		best := 0
		for r := range sentRounds {
			best = max(best, ph.gotBy(r*senders+i))
		}
		if best < ph.receivers {
			unheard = append(unheard, fmt.Sprintf("%s (at best %d of %d)", from.Name(i), best, ph.receivers))
		}
	}
	msg := fmt.Sprintf("ircbench: messages went %s only in part within %v", where, b.cfg.ReadyTimeout)
	if len(deaf) > 0 {
		msg += "; nothing reached " + strings.Join(deaf, ", ")
	}
	if len(unheard) > 0 {
		msg += "; not every receiver got a message from " + strings.Join(unheard, ", ")
	}
	return fmt.Errorf("%s", msg)
}

// settle waits until neither side has received anything for b.quiet, within maxSettle.
func (b *bench) settle(ctx context.Context, x, irc side) error {
	limit := time.Now().Add(maxSettle)
	last, lastChange := int64(-1), time.Now()
	tick := time.NewTicker(b.quiet / 10)
	defer tick.Stop()
	for {
		in := x.Inbound() + irc.Inbound()
		if in != last {
			last, lastChange = in, time.Now()
		}
		if time.Since(lastChange) >= b.quiet {
			return nil
		}
		if time.Now().After(limit) {
			b.logf("servers not quiet after %v; measuring anyway", maxSettle)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ircbench: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// cpu reads the CPU time of every measured process.
func (b *bench) cpu() ([]time.Duration, error) {
	out := make([]time.Duration, len(b.cfg.Processes))
	for i, p := range b.cfg.Processes {
		c, err := loadgen.ProcCPU(p.PID)
		if err != nil {
			return nil, fmt.Errorf("ircbench: process %s: %w", p.Name, err)
		}
		out[i] = c
	}
	return out, nil
}

// measure sends n messages from the users of from in turn, each once fewer than window messages
// are unfinished (at every receiver, bounced, or missing for LostAfter), and waits for the last
// deliveries.
func (b *bench) measure(ctx context.Context, dir Direction, name string, n, window int, from, to side) (Phase, error) {
	ph := b.newPhase(dir, name, n, to.Len())
	b.logf("%s %s: %d messages from %d users to %d, at most %d in flight", dir, name, n, from.Len(), to.Len(), window)
	cpu0, err := b.cpu()
	if err != nil {
		return Phase{}, err
	}
	self0 := loadgen.SelfCPU()
	b.cur.Store(ph)
	defer b.cur.Store(nil)
	start := b.now()
	base := 0
	for k := 0; k < n && err == nil; k++ {
		if err = b.waitWindow(ctx, ph, &base, k, window, start); err != nil {
			break
		}
		ph.markSent(k, b.now())
		if err = from.Send(k%from.Len(), ph.text(k, b.cfg.XMPP.BodySize, b.pad)); err != nil {
			err = fmt.Errorf("ircbench: %w", err)
		}
	}
	if err == nil {
		err = b.drain(ctx, ph, start)
	}
	cpu1, cerr := b.cpu()
	self1 := loadgen.SelfCPU()
	p := b.result(ph, start)
	if sent := time.Duration(p.Sent); sent > 0 && cerr == nil {
		for i := range cpu0 {
			p.CPUPer1000 = append(p.CPUPer1000, (cpu1[i]-cpu0[i])*1000/sent)
		}
		p.BenchPer1000 = (self1 - self0) * 1000 / sent
	}
	b.logf("%s %s: sent %d, delivered %d of %d, %d duplicates, %d errors, %.0f messages/s, p50 %v, p99 %v",
		dir, name, p.Sent, p.Delivered, p.Expected, p.Duplicates, p.Errors, p.MessagesPerSec, p.P50, p.P99)
	if err == nil {
		err = cerr
	}
	return p, err
}

// waitWindow waits until message k may be sent: fewer than window messages from base on are
// unfinished. It fails when nothing has arrived for stallTimes × LostAfter.
func (b *bench) waitWindow(ctx context.Context, ph *phase, base *int, k, window int, start int64) error {
	lost := int64(b.cfg.LostAfter)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := b.now()
		for *base < k && (ph.finished(*base) || now-ph.sentAt[*base].Load() >= lost) {
			*base++
		}
		if k-*base < window {
			return nil
		}
		lastAct := max(ph.last.Load(), start)
		if now-lastAct >= stallTimes*lost {
			return b.stallError(ph)
		}
		wait := time.Duration(min(ph.sentAt[*base].Load()+lost, lastAct+stallTimes*lost) - now)
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ircbench: %s %s: %w", ph.dir, ph.name, ctx.Err())
		case <-ph.progress:
		case <-timer.C:
		}
	}
}

func (b *bench) stallError(ph *phase) error {
	return fmt.Errorf("ircbench: %s %s: nothing arrived for %v after %d of %d messages were delivered everywhere: the gateway stopped relaying",
		ph.dir, ph.name, stallTimes*b.cfg.LostAfter, ph.complete.Load(), ph.sent.Load())
}

// drain waits until every message sent is finished, or nothing has been sent or delivered for
// LostAfter: what is still missing then is lost.
func (b *bench) drain(ctx context.Context, ph *phase, start int64) error {
	sent := ph.sent.Load()
	if sent == 0 {
		return nil
	}
	lost := int64(b.cfg.LostAfter)
	lastSent := ph.sentAt[sent-1].Load()
	timer := time.NewTimer(b.cfg.LostAfter)
	defer timer.Stop()
	for {
		if ph.complete.Load()+ph.errors.Load() >= ph.sent.Load() {
			return nil
		}
		now := b.now()
		lastAct := max(ph.last.Load(), lastSent, start)
		if now-lastAct >= lost {
			return nil
		}
		timer.Reset(time.Duration(lastAct + lost - now))
		select {
		case <-ctx.Done():
			return fmt.Errorf("ircbench: %s %s: %w", ph.dir, ph.name, ctx.Err())
		case <-ph.progress:
		case <-timer.C:
		}
	}
}

// result summarises a phase.
func (b *bench) result(ph *phase, start int64) Phase {
	p := Phase{
		Direction:  ph.dir,
		Name:       ph.name,
		Sent:       int(ph.sent.Load()),
		Delivered:  int(ph.delivered.Load()),
		Duplicates: int(ph.duplicates.Load()),
		Errors:     int(ph.errors.Load()),
	}
	p.Expected = p.Sent * ph.receivers
	if last := ph.last.Load(); last > start && ph.receivers > 0 {
		p.MessagesPerSec = float64(p.Delivered) / float64(ph.receivers) / time.Duration(last-start).Seconds()
	}
	p.P50, p.P99 = ph.percentiles()
	return p
}
