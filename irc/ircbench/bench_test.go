package ircbench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

// fakeSide is one side's users as the scenario sees them; the fake gateway carries what they say.
type fakeSide struct {
	names   []string
	say     func(i int, text string) error
	inbound atomic.Int64
}

func (s *fakeSide) Len() int                      { return len(s.names) }
func (s *fakeSide) Name(i int) string             { return s.names[i] }
func (s *fakeSide) Send(i int, text string) error { return s.say(i, text) }
func (s *fakeSide) Inbound() int64                { return s.inbound.Load() }

// fakeGateway links a room of XMPP users with a channel of IRC users in memory, delivering each
// message after delay on a goroutine per delivery. Its hooks decide, per delivery, to drop,
// duplicate or bounce it; the current phase tells them where the run is.
type fakeGateway struct {
	b         *bench
	x, irc    *fakeSide
	delay     time.Duration
	toXMPP    bool // the link carries IRC → XMPP
	toIRC     bool // and XMPP → IRC
	deaf      int  // this XMPP user never receives anything from IRC (-1: none)
	drop      func(ph *phase, receiver int, text string) bool
	duplicate func(ph *phase, receiver int, text string) bool
	bounce    func(ph *phase, text string) bool
	wg        sync.WaitGroup
}

func newFakeGateway(t *testing.T, cfg Config) *fakeGateway {
	t.Helper()
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{b: newBench(cfg), delay: 200 * time.Microsecond, toXMPP: true, toIRC: true, deaf: -1}
	g.b.quiet = 50 * time.Millisecond
	g.x = &fakeSide{names: []string{"bench0", "bench1", "bench2"}}
	g.irc = &fakeSide{names: []string{"ircb0", "ircb1"}}
	g.x.say = func(i int, text string) error { return g.carry(XMPPToIRC, i, text) }
	g.irc.say = func(i int, text string) error { return g.carry(IRCToXMPP, i, text) }
	t.Cleanup(g.wg.Wait)
	return g
}

func (g *fakeGateway) carry(dir Direction, sender int, text string) error {
	ph := g.b.cur.Load()
	later := func(f func()) {
		g.wg.Go(func() {
			time.Sleep(g.delay)
			f()
		})
	}
	if dir == XMPPToIRC && g.bounce != nil && ph != nil && g.bounce(ph, text) {
		g.x.inbound.Add(1)
		later(func() {
			g.b.onXMPP(loadgen.Received{Session: sender, From: []byte("room"), Type: []byte("error"), Body: []byte(text)})
		})
		return nil
	}
	to := g.x
	if dir == XMPPToIRC {
		to = g.irc
	}
	if (dir == IRCToXMPP && !g.toXMPP) || (dir == XMPPToIRC && !g.toIRC) {
		return nil
	}
	for r := range to.Len() {
		if dir == IRCToXMPP && r == g.deaf {
			continue
		}
		if ph != nil && g.drop != nil && g.drop(ph, r, text) {
			continue
		}
		copies := 1
		if ph != nil && g.duplicate != nil && g.duplicate(ph, r, text) {
			copies = 2
		}
		for range copies {
			to.inbound.Add(1)
			if dir == IRCToXMPP {
				later(func() {
					g.b.onXMPP(loadgen.Received{Session: r, From: []byte("room/" + g.irc.names[sender]), Type: []byte("groupchat"), Body: []byte(text)})
				})
			} else {
				later(func() { g.b.onIRC(r)(text) })
			}
		}
	}
	return nil
}

func (g *fakeGateway) run(t *testing.T) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return g.b.run(ctx, g.x, g.irc)
}

func testConfig() Config {
	return Config{
		Room: "bench@conference.example.test", IRCAddr: "127.0.0.1:6667", Channel: "#bench",
		LatencyMessages: 20, Burst: 300, Window: 10,
		Processes:    []Process{{"self", os.Getpid()}},
		ReadyTimeout: 5 * time.Second,
		LostAfter:    300 * time.Millisecond,
	}
}

// is reports whether text is message seq of the phase.
func is(ph *phase, text string, seq int) bool {
	n, ok := ph.seq([]byte(text))
	return ok && n == seq
}

func TestRunClean(t *testing.T) {
	g := newFakeGateway(t, testConfig())
	res, err := g.run(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Table())
	if len(res.Phases) != 4 {
		t.Fatalf("%d phases", len(res.Phases))
	}
	want := []struct {
		dir             Direction
		name            string
		sent, receivers int
	}{
		{IRCToXMPP, "latency", 20, 3}, {XMPPToIRC, "latency", 20, 2},
		{IRCToXMPP, "throughput", 300, 3}, {XMPPToIRC, "throughput", 300, 2},
	}
	for i, p := range res.Phases {
		w := want[i]
		if p.Direction != w.dir || p.Name != w.name || p.Sent != w.sent || p.Expected != w.sent*w.receivers ||
			p.Delivered != p.Expected || p.Lost() != 0 || p.Duplicates != 0 || p.Errors != 0 {
			t.Errorf("phase %d: %+v, want %+v and everything delivered once", i, p, w)
		}
		if p.P50 < g.delay || p.P99 < p.P50 || p.MessagesPerSec <= 0 {
			t.Errorf("phase %d: p50 %v, p99 %v, %.0f msg/s", i, p.P50, p.P99, p.MessagesPerSec)
		}
		if len(p.CPUPer1000) != 1 || p.CPUTotalPer1000() != p.CPUPer1000[0] {
			t.Errorf("phase %d: CPU %v", i, p.CPUPer1000)
		}
	}
	if res.Ready <= 0 || res.XMPPUsers != 3 || res.IRCUsers != 2 {
		t.Errorf("result %+v", res)
	}
	table := res.Table()
	for _, s := range []string{"IRC→XMPP", "XMPP→IRC", "latency", "throughput", "self CPU/1k", "total CPU/1k", "at most 10 in flight"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q", s)
		}
	}
}

func TestRunLossesDuplicatesBounces(t *testing.T) {
	g := newFakeGateway(t, testConfig())
	g.drop = func(ph *phase, r int, text string) bool {
		return ph.name == "throughput" && ph.dir == XMPPToIRC && r == 1 && is(ph, text, 5)
	}
	g.duplicate = func(ph *phase, r int, text string) bool {
		return ph.name == "throughput" && ph.dir == IRCToXMPP && r == 0 && is(ph, text, 7)
	}
	g.bounce = func(ph *phase, text string) bool {
		return ph.name == "latency" && is(ph, text, 3)
	}
	res, err := g.run(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Table())
	lat, in, out := res.Phases[1], res.Phases[2], res.Phases[3]
	if lat.Errors != 1 || lat.Lost() != 2 || lat.Delivered != 19*2 {
		t.Errorf("bounced latency phase: %+v", lat)
	}
	if in.Duplicates != 1 || in.Lost() != 0 || in.Delivered != 900 {
		t.Errorf("duplicating phase: %+v", in)
	}
	if out.Lost() != 1 || out.Duplicates != 0 || out.Delivered != 599 {
		t.Errorf("dropping phase: %+v", out)
	}
}

func TestRunNotLinked(t *testing.T) {
	cfg := testConfig()
	cfg.ReadyTimeout = time.Second
	g := newFakeGateway(t, cfg)
	g.toXMPP, g.toIRC = false, false
	began := time.Now()
	_, err := g.run(t)
	if err == nil || !strings.Contains(err.Error(), "no message went from #bench on 127.0.0.1:6667 to the room bench@conference.example.test within 1s: is the room linked to the channel") {
		t.Fatalf("run = %v", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("took %v to give up", d)
	}
}

func TestRunOneWay(t *testing.T) {
	cfg := testConfig()
	cfg.ReadyTimeout = time.Second
	g := newFakeGateway(t, cfg)
	g.toIRC = false
	_, err := g.run(t)
	if err == nil || !strings.Contains(err.Error(), "no message went from the room bench@conference.example.test to #bench") {
		t.Fatalf("run = %v", err)
	}
}

func TestRunPartlyLinked(t *testing.T) {
	cfg := testConfig()
	cfg.ReadyTimeout = time.Second
	g := newFakeGateway(t, cfg)
	g.deaf = 2
	_, err := g.run(t)
	if err == nil || !strings.Contains(err.Error(), "only in part") || !strings.Contains(err.Error(), "nothing reached bench2") ||
		!strings.Contains(err.Error(), "ircb0 (at best 2 of 3)") {
		t.Fatalf("run = %v", err)
	}
}

func TestRunBouncedProbes(t *testing.T) {
	cfg := testConfig()
	cfg.ReadyTimeout = time.Second
	g := newFakeGateway(t, cfg)
	g.bounce = func(*phase, string) bool { return true }
	_, err := g.run(t)
	if err == nil || !strings.Contains(err.Error(), "came back as errors") {
		t.Fatalf("run = %v", err)
	}
}

func TestRunGatewayStops(t *testing.T) {
	cfg := testConfig()
	cfg.LostAfter = 100 * time.Millisecond
	g := newFakeGateway(t, cfg)
	g.drop = func(ph *phase, _ int, text string) bool {
		n, ok := ph.seq([]byte(text))
		return ph.name == "throughput" && ok && n >= 50
	}
	began := time.Now()
	res, err := g.run(t)
	if err == nil || !strings.Contains(err.Error(), "IRC→XMPP throughput: nothing arrived for 300ms after 50 of ") ||
		!strings.Contains(err.Error(), "the gateway stopped relaying") {
		t.Fatalf("run = %v", err)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("took %v to give up", d)
	}
	// Messages missing for LostAfter free their place in the window: more than 60 went out.
	if len(res.Phases) != 3 {
		t.Fatalf("phases %+v", res.Phases)
	}
	if p := res.Phases[2]; p.Sent < 60 || p.Delivered != 150 || p.Lost() != (p.Sent-50)*3 {
		t.Errorf("stalled phase %+v", p)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Room: "r@c.example", IRCAddr: "127.0.0.1:6667", Channel: "#c"}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.XMPP.Users != 3 || c.IRCUsers != 2 || c.LatencyMessages != 300 || c.Burst != 2000 || c.Window != 100 ||
		c.ReadyTimeout != time.Minute || c.LostAfter != 5*time.Second || c.XMPP.BodySize != 100 || c.NickPattern != "ircb%d" {
		t.Errorf("defaults %+v", c)
	}
	for _, bad := range []Config{
		{IRCAddr: "a:1", Channel: "#c"},
		{Room: "r@c", IRCAddr: "a:1", Channel: "#c d"},
		{Room: "r@c", IRCAddr: "a:1", Channel: "#c", NickPattern: "irc"},
		{Room: "r@c", IRCAddr: "a:1", Channel: "#c", XMPP: loadgen.Config{BodySize: 401}},
		{Room: "r@c", IRCAddr: "a:1", Channel: "#c", Processes: []Process{{"x", 0}}},
	} {
		if err := bad.setDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func ExampleResult_Table() {
	r := Result{Room: "bench@conference.example.org", Channel: "#bench", IRCAddr: "127.0.0.1:6667", XMPPUsers: 3, IRCUsers: 2,
		Window: 100, Processes: []string{"aldis"}, Ready: 1234 * time.Millisecond,
		Phases: []Phase{{Direction: XMPPToIRC, Name: "throughput", Sent: 2000, Expected: 4000, Delivered: 3999, Duplicates: 1,
			MessagesPerSec: 9876.4, P50: 1234567, P99: 9876543, CPUPer1000: []time.Duration{45 * time.Millisecond},
			BenchPer1000: 20 * time.Millisecond}}}
	fmt.Print(r.Table())
	// Output:
	// IRC gateway: 3 XMPP users in bench@conference.example.org, 2 IRC users in #bench on 127.0.0.1:6667; messages crossed both ways after 1.23s
	//   direction       phase  sent  delivered  lost  duplicates  errors  msg/s     p50     p99  aldis CPU/1k  total CPU/1k  bench CPU/1k
	//    XMPP→IRC  throughput  2000       3999     1           1       0   9876  1.23ms  9.88ms        45.0ms        45.0ms        20.0ms
	// (each message is due once at every user on the other side: 3 XMPP users from IRC, 2 IRC users from XMPP; latency sends one message at a time, throughput keeps at most 100 in flight; CPU is per 1,000 messages sent, read from /proc in 10 ms ticks)
}
