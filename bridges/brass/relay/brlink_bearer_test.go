package relay

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// brlinkLogger logs to stderr with -v and BRLINK_DEBUG set; silent otherwise.
func brlinkLogger(name string) *slog.Logger {
	if os.Getenv("BRLINK_DEBUG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

// fastLink are timings for tests on loopback.
func fastLink(name, comp string) BRLINKConfig {
	return BRLINKConfig{Name: name, Compression: comp, HelloRetry: 200 * time.Millisecond, HelloRetryMax: time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, AckDelay: 100 * time.Millisecond,
		Logger: brlinkLogger(name)}
}

// testPeer runs a bearer and keeps its events.
type testPeer struct {
	Bearer
	ev     chan Event
	cancel context.CancelFunc
	done   chan struct{}
}

func runPeer(t *testing.T, b Bearer) *testPeer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &testPeer{Bearer: b, ev: make(chan Event, 4096), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if err := b.Run(ctx, p.ev); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *testPeer) stop() {
	p.cancel()
	<-p.done
}

// next returns the next event of kind k, failing on timeout; others are
// passed to skip (which may be nil).
func (p *testPeer) next(t *testing.T, k EventKind, d time.Duration, skip func(Event)) Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-p.ev:
			if e.Kind == k {
				return e
			}
			if skip != nil {
				skip(e)
			}
		case <-timeout:
			t.Fatalf("no event %d within %v", k, d)
		}
	}
}

func tcpPair(t *testing.T, a, b BRLINKConfig, mtu int) (*TCPBearer, *TCPBearer) {
	t.Helper()
	lb, err := NewTCPBearer(TCPConfig{BRLINKConfig: b, Listen: "127.0.0.1:0", MTU: mtu})
	if err != nil {
		t.Fatal(err)
	}
	la, err := NewTCPBearer(TCPConfig{BRLINKConfig: a, Connect: lb.Addr().String(), MTU: mtu})
	if err != nil {
		t.Fatal(err)
	}
	return la, lb
}

func testID(i int) brlink.ID {
	var id brlink.ID
	copy(id[:], fmt.Sprintf("id-%012d", i))
	return id
}

func TestBRLINKTCPUpSendAck(t *testing.T) {
	for _, comp := range []string{"none", "frame", "link"} {
		t.Run(comp, func(t *testing.T) {
			ba, bb := tcpPair(t, fastLink("ship", comp), fastLink("shore", comp), 2048)
			a, b := runPeer(t, ba), runPeer(t, bb)
			a.next(t, Up, 5*time.Second, nil)
			b.next(t, Up, 5*time.Second, nil)
			ctx := context.Background()
			const n = 100
			for i := range n {
				it := &Item{ID: testID(i), Class: brlink.ClassXMPP, Precedence: brlink.Routine,
					Expires: time.Now().Add(time.Hour), Payload: chatStanza(i)}
				if err := a.Send(ctx, it); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				e := b.next(t, Received, 5*time.Second, nil)
				if e.Item.ID != testID(i) || !bytes.Equal(e.Item.Payload, chatStanza(i)) || e.Item.Class != brlink.ClassXMPP ||
					e.Item.Precedence != brlink.Routine || e.Item.Expires.IsZero() {
					t.Fatalf("item %d arrived as %+v %q", i, e.Item, e.Item.Payload)
				}
				e.Ack()
			}
			acked := map[brlink.ID]bool{}
			for len(acked) < n {
				for _, id := range a.next(t, Acked, 5*time.Second, nil).IDs {
					acked[id] = true
				}
			}
			for i := range n {
				if !acked[testID(i)] {
					t.Fatalf("item %d not acknowledged", i)
				}
			}
			sa, sb := ba.Stats(), bb.Stats()
			t.Logf("%s: sender %+v, receiver %+v", comp, sa, sb)
			// 100 receipts share a few ACK frames (60 at once, the rest after
			// the delay); the other frames are HELLO, HELLO-ACK and a retry.
			if sb.FramesOut > 7 {
				t.Errorf("receiver sent %d frames for 100 receipts", sb.FramesOut)
			}
		})
	}
}

func TestBRLINKTCPReconnect(t *testing.T) {
	ba, bb := tcpPair(t, fastLink("ship", "link"), fastLink("shore", "link"), 2048)
	a, b := runPeer(t, ba), runPeer(t, bb)
	a.next(t, Up, 5*time.Second, nil)
	b.next(t, Up, 5*time.Second, nil)
	ctx := context.Background()
	send := func(from *testPeer, to *testPeer, i int) {
		t.Helper()
		if err := from.Send(ctx, &Item{ID: testID(i), Class: brlink.ClassXMPP, Payload: chatStanza(i)}); err != nil {
			t.Fatal(err)
		}
		if e := to.next(t, Received, 5*time.Second, nil); !bytes.Equal(e.Item.Payload, chatStanza(i)) {
			t.Fatalf("item %d: %q", i, e.Item.Payload)
		}
	}
	for i := range 5 {
		send(a, b, i)
	}
	// The shore restarts: the ship sees the connection go, then reconnects
	// to a peer whose streams start empty.
	addr := bb.Addr().String()
	b.stop()
	a.next(t, Down, 5*time.Second, nil)
	cfg := fastLink("shore", "link")
	var bb2 *TCPBearer
	var err error
	for range 50 { // the old listener's port may take a moment to free
		if bb2, err = NewTCPBearer(TCPConfig{BRLINKConfig: cfg, Listen: addr}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b2 := runPeer(t, bb2)
	a.next(t, Up, 5*time.Second, nil)
	b2.next(t, Up, 5*time.Second, nil)
	for i := 5; i < 10; i++ {
		send(a, b2, i)
		send(b2, a, 100+i)
	}
}

func TestBRLINKTCPFraming(t *testing.T) {
	for _, n := range []int{2, 4} {
		c1, c2 := net.Pipe()
		cfg := TCPConfig{MTU: 300, LengthBytes: n, WriteTimeout: time.Second}
		w, r := newTCPConn(c1, cfg), newTCPConn(c2, cfg)
		frame := bytes.Repeat([]byte{0xB1}, 300)
		go w.Write(context.Background(), frame, brlink.Routine)
		if e := <-r.Events(); !bytes.Equal(e.frame, frame) {
			t.Fatalf("%d-byte prefix: got %d bytes", n, len(e.frame))
		}
		if err := w.Write(context.Background(), append(frame, 0), brlink.Routine); err == nil {
			t.Fatalf("%d-byte prefix: frame over the MTU written", n)
		}
		if n == 4 {
			// A length over what we accept ends the connection.
			go c1.Write([]byte{0xFF, 0xFF, 0xFF, 0xFF})
			select {
			case _, ok := <-r.Events():
				if ok || r.Err() == nil {
					t.Fatal("4 GiB frame announced, connection kept")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("4 GiB frame announced, reader still waiting")
			}
		}
		w.Close()
		r.Close()
	}
}

// A FLASH item overtakes a long ROUTINE one at the next segment boundary
// instead of waiting for it to finish.
func TestBRLINKPreemptsMidItem(t *testing.T) {
	ca, cb := fastLink("ship", "none"), fastLink("shore", "none")
	ca.Rate = 80_000 // 20 KiB take 2 s
	ba, bb := tcpPair(t, ca, cb, 1024)
	a, b := runPeer(t, ba), runPeer(t, bb)
	a.next(t, Up, 5*time.Second, nil)
	b.next(t, Up, 5*time.Second, nil)
	ctx := context.Background()
	long := bytes.Repeat([]byte("routine "), 20<<10/8)
	if err := a.Send(ctx, &Item{ID: testID(1), Class: brlink.ClassEmail, Precedence: brlink.Routine, Payload: long}); err != nil {
		t.Fatal(err)
	}
	for ba.Stats().DataBytesOut < 4096 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Send(ctx, &Item{ID: testID(2), Class: brlink.ClassXMPP, Precedence: brlink.Flash, Payload: []byte("<message><body>flash</body></message>")}); err != nil {
		t.Fatal(err)
	}
	if e := b.next(t, Received, 5*time.Second, nil); e.Item.ID != testID(2) {
		t.Fatalf("first to arrive: %v with %d bytes; want the FLASH item", e.Item.Precedence, len(e.Item.Payload))
	}
	if e := b.next(t, Received, 5*time.Second, nil); !bytes.Equal(e.Item.Payload, long) {
		t.Fatalf("the ROUTINE item after pre-emption: %d bytes", len(e.Item.Payload))
	}
}
