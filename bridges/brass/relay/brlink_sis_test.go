package relay

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/linksim"
	"github.com/aldis-im/aldis/bridges/brass/sis"
)

var simNodeA, simNodeB = sis.Addr{Node: 1}, sis.Addr{Node: 2}

// startSim runs a linksim pair for the test's lifetime.
func startSim(t *testing.T, cfg linksim.Config) *linksim.Sim {
	t.Helper()
	cfg.ListenA, cfg.ListenB = "127.0.0.1:0", "127.0.0.1:0"
	s, err := linksim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// sisPeers makes a bearer at each end of the simulator; end A is the ship.
func sisPeers(t *testing.T, s *linksim.Sim, a, b BRLINKConfig) (*BRLINKBearer, *BRLINKBearer) {
	t.Helper()
	addrA, addrB := s.Addrs()
	ba, err := NewSISBearer(SISConfig{BRLINKConfig: a, Node: addrA, Peer: simNodeB})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := NewSISBearer(SISConfig{BRLINKConfig: b, Node: addrB, Peer: simNodeA})
	if err != nil {
		t.Fatal(err)
	}
	return ba, bb
}

// hfLink are timings for tests over the simulator, shortened from the HF
// defaults so tests finish.
func hfLink(name, comp string, rate int) BRLINKConfig {
	c := fastLink(name, comp)
	c.Rate = rate
	c.HelloRetry, c.HelloRetryMax = time.Second, 2*time.Second
	return c
}

// words makes natural-looking text, compressible as prose is.
func words(rng *rand.Rand, n int) string {
	vocab := strings.Fields(`the a of to and in is for on with at by from as be this that report position course speed
		wind sea state weather visibility fuel water crew ship shore convoy escort rendezvous bearing range contact
		radar sonar signal message received acknowledged request permission proceed hold station north south east west
		knots miles hours minutes zulu time date arrival departure port starboard bow stern deck bridge engine`)
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		w := vocab[rng.IntN(len(vocab))]
		if rng.IntN(8) == 0 {
			w = fmt.Sprint(rng.IntN(10000))
		}
		b.WriteString(w)
	}
	return b.String()[:n]
}

// chatMessage is a typical chat stanza: from, to, id and a ~100-character body.
func chatMessage(rng *rand.Rand, i int) []byte {
	return fmt.Appendf(nil, `<message from='officer.watch@hms-example.navy.example/bridge' to='ops.room@fleet-hq.navy.example' id='%08x' type='chat'><body>%s</body></message>`,
		rng.Uint32(), words(rng, 100))
}

func TestBRLINKSISSegmentation10KiB(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20 s of simulated HF")
	}
	t.Parallel()
	s := startSim(t, linksim.Config{Rate: 2400, Latency: 200 * time.Millisecond, MTU: 2048})
	ba, bb := sisPeers(t, s, hfLink("ship", "link", 2400), hfLink("shore", "link", 2400))
	a, b := runPeer(t, ba), runPeer(t, bb)
	a.next(t, Up, 10*time.Second, nil)
	b.next(t, Up, 10*time.Second, nil)
	rng := rand.New(rand.NewPCG(10, 10))
	stanza := []byte("<message from='a@ship.example' to='b@shore.example' id='big'><body>" + words(rng, 10240-80) + "</body></message>")
	it := &Item{ID: testID(1), Class: brlink.ClassXMPP, Precedence: brlink.Routine, Payload: stanza}
	t0 := time.Now()
	if err := a.Send(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	e := b.next(t, Received, 60*time.Second, nil)
	if !bytes.Equal(e.Item.Payload, stanza) {
		t.Fatalf("reassembled %d bytes differ from the %d sent", len(e.Item.Payload), len(stanza))
	}
	st := ba.Stats()
	segments := st.FramesOut - 2 // HELLO and HELLO-ACK
	t.Logf("%d-byte stanza: %d segments, %d bytes on the link, %v at 2,400 bit/s", len(stanza), segments, st.DataBytesOut, time.Since(t0).Round(time.Millisecond))
	if segments < 2 {
		t.Fatalf("%d segment(s): segmentation not exercised", segments)
	}
}

func TestBRLINKSISFlashPreempts(t *testing.T) {
	t.Parallel()
	const rate = 64000
	s := startSim(t, linksim.Config{Rate: rate, Latency: 50 * time.Millisecond})
	ba, bb := sisPeers(t, s, hfLink("ship", "none", rate), hfLink("shore", "none", rate))
	a, b := runPeer(t, ba), runPeer(t, bb)
	a.next(t, Up, 10*time.Second, nil)
	b.next(t, Up, 10*time.Second, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100 {
		if err := a.Send(ctx, &Item{ID: testID(i), Class: brlink.ClassXMPP, Precedence: brlink.Routine, Payload: chatMessage(rng, i)}); err != nil {
			t.Fatal(err)
		}
	}
	flash := testID(1000)
	if err := a.Send(ctx, &Item{ID: flash, Class: brlink.ClassEmail, Precedence: brlink.Flash, Payload: []byte("MAIL FROM:<cic@ship>\r\n\r\nFLASH")}); err != nil {
		t.Fatal(err)
	}
	// Items that had left our queue when FLASH came (a bound on those
	// that may still precede it; counted after, so possibly FLASH too).
	gone := ba.Stats().ItemsOut
	pos := -1
	for i := range 101 {
		e := b.next(t, Received, 20*time.Second, nil)
		if e.Item.ID == flash {
			pos = i
			if e.Item.Precedence != brlink.Flash {
				t.Errorf("precedence %v", e.Item.Precedence)
			}
		}
	}
	t.Logf("FLASH arrived in position %d after 100 ROUTINE items (≈240 bytes each); %d items had left our queue", pos, gone)
	// Ahead of it may be only what had left our queue: the frame on the
	// air and the pacer's small burst in the modem.
	if pos < 0 || int64(pos) > gone || pos > 10 {
		t.Fatalf("FLASH in position %d, with %d items sent before it", pos, gone)
	}
}

func TestBRLINKSISOutageDownUp(t *testing.T) {
	t.Parallel()
	s := startSim(t, linksim.Config{Rate: 24000, Latency: 100 * time.Millisecond,
		Outages: []linksim.Outage{{Start: 1500 * time.Millisecond, Duration: 3 * time.Second}}})
	cfg := func(name string) BRLINKConfig {
		c := hfLink(name, "link", 24000)
		c.ProbeIdle, c.ProbeTimeout, c.HelloRetry = 300*time.Millisecond, time.Second, 300*time.Millisecond
		return c
	}
	ba, bb := sisPeers(t, s, cfg("ship"), cfg("shore"))
	a, b := runPeer(t, ba), runPeer(t, bb)
	a.next(t, Up, 5*time.Second, nil)
	b.next(t, Up, 5*time.Second, nil)
	ctx := context.Background()
	if err := a.Send(ctx, &Item{ID: testID(1), Class: brlink.ClassXMPP, Payload: []byte("<message><body>before</body></message>")}); err != nil {
		t.Fatal(err)
	}
	b.next(t, Received, 5*time.Second, nil).Ack()
	a.next(t, Acked, 5*time.Second, nil)
	t0 := time.Now()
	d := a.next(t, Down, 10*time.Second, nil)
	t.Logf("down after %v: %v", time.Since(t0).Round(time.Millisecond), d.Err)
	if err := a.Send(ctx, &Item{ID: testID(2), Payload: []byte("x")}); err != ErrDown {
		t.Fatalf("Send while down: %v", err)
	}
	a.next(t, Up, 10*time.Second, nil)
	t.Logf("up again after %v", time.Since(t0).Round(time.Millisecond))
	if time.Since(t0) < 2*time.Second {
		t.Errorf("up again during the outage")
	}
	want := []byte("<message><body>after</body></message>")
	if err := a.Send(ctx, &Item{ID: testID(3), Class: brlink.ClassXMPP, Payload: want}); err != nil {
		t.Fatal(err)
	}
	e := b.next(t, Received, 10*time.Second, nil)
	if !bytes.Equal(e.Item.Payload, want) {
		t.Fatalf("after the outage got %q", e.Item.Payload)
	}
}

func TestBRLINKSISPeerRestart(t *testing.T) {
	t.Parallel()
	s := startSim(t, linksim.Config{Rate: 64000, Latency: 50 * time.Millisecond})
	ba, bb := sisPeers(t, s, hfLink("ship", "link", 64000), hfLink("shore", "link", 64000))
	a, b := runPeer(t, ba), runPeer(t, bb)
	a.next(t, Up, 5*time.Second, nil)
	b.next(t, Up, 5*time.Second, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	exchange := func(a, b *testPeer, base int) {
		t.Helper()
		var sent [][]byte
		for i := range 5 {
			p := chatMessage(rng, i)
			sent = append(sent, p)
			if err := a.Send(ctx, &Item{ID: testID(base + i), Class: brlink.ClassXMPP, Payload: p}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			e := b.next(t, Received, 5*time.Second, nil)
			if !bytes.Equal(e.Item.Payload, sent[i]) {
				t.Fatalf("item %d: got %q", base+i, e.Item.Payload)
			}
		}
	}
	exchange(a, b, 0)
	exchange(b, a, 100)

	// The ship restarts; the shore's SIS connection stays, so it learns of
	// the restart only from the new HELLO, and must start its streams again.
	a.stop()
	addrA, _ := s.Addrs()
	ba2, err := NewSISBearer(SISConfig{BRLINKConfig: hfLink("ship", "link", 64000), Node: addrA, Peer: simNodeB})
	if err != nil {
		t.Fatal(err)
	}
	a2 := runPeer(t, ba2)
	a2.next(t, Up, 10*time.Second, nil)
	b.next(t, Up, 10*time.Second, nil) // again: the relay resends what is unacknowledged
	exchange(b, a2, 200)
	exchange(a2, b, 300)
}

func TestBRLINKSISHelloRetry(t *testing.T) {
	t.Parallel()
	s := startSim(t, linksim.Config{Rate: 24000, Latency: 100 * time.Millisecond})
	cfg := func(name string) BRLINKConfig {
		c := hfLink(name, "link", 24000)
		c.HelloRetry, c.HelloRetryMax = 200*time.Millisecond, 400*time.Millisecond
		return c
	}
	ba, bb := sisPeers(t, s, cfg("ship"), cfg("shore"))
	a := runPeer(t, ba)
	// The shore's relay is not running: the node rejects our HELLOs (SAP
	// not bound) and we keep asking, without claiming the link is up.
	select {
	case e := <-a.ev:
		t.Fatalf("event %d with nobody at the far end", e.Kind)
	case <-time.After(1500 * time.Millisecond):
	}
	b := runPeer(t, bb)
	a.next(t, Up, 5*time.Second, nil)
	b.next(t, Up, 5*time.Second, nil)
	if n := ba.Stats().FramesOut; n < 4 {
		t.Errorf("%d frames sent: HELLO was not retried", n)
	}
}

func TestBRLINKSISNonARQFrameCompression(t *testing.T) {
	t.Parallel()
	s := startSim(t, linksim.Config{Rate: 24000, Latency: 100 * time.Millisecond})
	addrA, addrB := s.Addrs()
	if _, err := NewSISBearer(SISConfig{BRLINKConfig: hfLink("ship", "link", 24000), Node: addrA, Peer: simNodeB, NonARQ: true}); err == nil {
		t.Fatal("link compression accepted without ARQ")
	}
	ba, err := NewSISBearer(SISConfig{BRLINKConfig: hfLink("ship", "", 24000), Node: addrA, Peer: simNodeB, NonARQ: true})
	if err != nil {
		t.Fatal(err)
	}
	// The shore broadcasts to a group: up once bound.
	bb, err := NewSISBearer(SISConfig{BRLINKConfig: hfLink("shore", "", 24000), Node: addrB, Peer: sis.Addr{Node: simNodeA.Node, Group: true}, NonARQ: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := runPeer(t, ba), runPeer(t, bb)
	b.next(t, Up, 5*time.Second, nil)
	a.next(t, Up, 5*time.Second, nil)
	rng := rand.New(rand.NewPCG(1, 1))
	want := chatMessage(rng, 1)
	if err := bb.Send(context.Background(), &Item{ID: testID(1), Class: brlink.ClassFMUC, Precedence: brlink.Priority, Payload: want}); err != nil {
		t.Fatal(err)
	}
	e := a.next(t, Received, 5*time.Second, nil)
	if !bytes.Equal(e.Item.Payload, want) || e.Item.Class != brlink.ClassFMUC {
		t.Fatalf("got %+v", e.Item)
	}
	e.Ack()
	b.next(t, Acked, 5*time.Second, nil)
	if st := bb.Stats(); st.DataBytesOut >= int64(len(want)+brlink.HeaderLen) {
		t.Errorf("%d bytes sent for a %d-byte stanza: not compressed", st.DataBytesOut, len(want))
	}
}
