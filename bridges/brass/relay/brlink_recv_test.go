package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// testLink is a bearer's state without a carrier, to drive the send and
// receive paths directly.
func testLink(t testing.TB, comp string, mtu, maxItem int) *linkState {
	t.Helper()
	b, err := newBRLINKBearer(BRLINKConfig{Compression: comp, MaxItem: maxItem}, carrierTraits{ordered: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := newLinkState(b)
	l.mtu = mtu
	return l
}

func received(l *linkState) []*Item {
	var out []*Item
	for _, e := range l.out {
		if e.Kind == Received {
			out = append(out, e.Item)
		}
	}
	l.out = nil
	return out
}

func TestBRLINKReassemblyAndExpiry(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	stanza := []byte("<message to='b@shore.example'><body>" + words(rng, 10240-50) + "</body></message>")
	now := time.Now()
	for _, comp := range []string{"none", "frame", "link"} {
		t.Run(comp, func(t *testing.T) {
			tx, rx := testLink(t, comp, 2048, 1<<20), testLink(t, comp, 2048, 1<<20)
			it := &Item{ID: testID(1), Class: brlink.ClassXMPP, Precedence: brlink.Priority, Expires: now.Add(time.Minute), Payload: stanza}
			frames, err := tx.encode(it)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes in %d frames", len(stanza), len(frames))
			if comp == "none" && len(frames) != 6 {
				t.Fatalf("%d frames; want 6 of at most 2,020 payload bytes", len(frames))
			}
			for _, f := range frames {
				if len(f) > 2048 {
					t.Fatalf("frame of %d bytes", len(f))
				}
			}
			// Segments may arrive in any order (frame mode on non-ARQ).
			order := rng.Perm(len(frames))
			if comp == "link" {
				order = order[:0]
				for i := range frames {
					order = append(order, i)
				}
			}
			for _, i := range order {
				rx.receive(frames[i], now)
			}
			got := received(rx)
			if len(got) != 1 || !bytes.Equal(got[0].Payload, stanza) || got[0].ID != it.ID ||
				got[0].Precedence != brlink.Priority || got[0].Expires.Unix() != it.Expires.Unix() {
				t.Fatalf("reassembled %d items, %+v", len(got), got)
			}

			// The same item with one segment lost: held until it expires,
			// then discarded.
			it2 := *it
			it2.ID = testID(2)
			it2.Payload = []byte("<message to='b@shore.example'><body>" + words(rng, 10240-50) + "</body></message>")
			frames, err = tx.encode(&it2)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) < 2 {
				t.Fatalf("%d frame(s)", len(frames))
			}
			for i, f := range frames {
				if i != 1 {
					rx.receive(f, now)
				}
			}
			if got := received(rx); len(got) != 0 || rx.reasm.Pending() != 1 {
				t.Fatalf("incomplete: %d items, %d pending", len(got), rx.reasm.Pending())
			}
			rx.tick(now.Add(30 * time.Second))
			if rx.reasm.Pending() != 1 {
				t.Fatal("discarded before its expiry")
			}
			rx.tick(now.Add(2 * time.Minute))
			if rx.reasm.Pending() != 0 || rx.reasm.Bytes() != 0 {
				t.Fatalf("after expiry: %d pending, %d bytes", rx.reasm.Pending(), rx.reasm.Bytes())
			}
		})
	}
}

func TestBRLINKSendLimits(t *testing.T) {
	ba, bb := tcpPair(t, fastLink("ship", "none"), fastLink("shore", "none"), 156)
	a := runPeer(t, ba)
	runPeer(t, bb)
	ctx := t.Context()
	// Down before the handshake.
	if err := ba.Send(ctx, &Item{ID: testID(1), Payload: []byte("x")}); err != ErrDown {
		t.Fatalf("before Up: %v", err)
	}
	a.next(t, Up, 5*time.Second, nil)
	// A precedence or class BRLINK has no code for.
	for _, it := range []*Item{{Precedence: brlink.Override + 1}, {Class: brlink.ClassFMUC + 1}} {
		if err := ba.Send(ctx, it); !errors.Is(err, ErrBadItem) {
			t.Fatalf("%+v: %v", it, err)
		}
	}
	// Over MaxItem.
	if err := ba.Send(ctx, &Item{ID: testID(2), Payload: make([]byte, 1<<20+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxItem: %v", err)
	}
	// With a larger MaxItem, the 65,535-segment limit at this MTU (128
	// payload bytes a frame).
	big := testLink(t, "none", 156, 16<<20)
	big.up, big.conn = true, &tcpConn{}
	if err := big.enqueue(&Item{ID: testID(4), Payload: make([]byte, 128*65535+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("65,536 segments: %v", err)
	}
	if err := big.enqueue(&Item{ID: testID(5), Payload: make([]byte, 128*65535)}); err != nil {
		t.Fatalf("65,535 segments: %v", err)
	}
}

// FuzzBRLINKReceive feeds arbitrary U_PDUs to the receive path of each
// compression mode: no panic, and what is held stays within the limits.
func FuzzBRLINKReceive(f *testing.F) {
	seedLink := testLink(f, "link", 512, 4096)
	seedFrame := testLink(f, "frame", 512, 4096)
	var seed []byte
	add := func(b []byte) {
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(b)))
		seed = append(seed, b...)
	}
	for _, l := range []*linkState{seedLink, seedFrame} {
		for i := range 3 {
			frames, err := l.encode(&Item{ID: testID(i), Class: brlink.ClassXMPP, Precedence: brlink.Precedence(i),
				Payload: bytes.Repeat([]byte("<message><body>hello</body></message>"), 30*i+1)})
			if err != nil {
				f.Fatal(err)
			}
			for _, fr := range frames {
				add(fr)
			}
		}
	}
	h, _ := brlink.AppendHello(nil, &brlink.HelloBody{Version: 1, Compression: brlink.CompressLink, Nonce: 3, Node: "x"})
	hf, _ := brlink.Append(nil, &brlink.Frame{Type: brlink.Hello, Segments: 1, Payload: h})
	add(hf)
	af, _ := brlink.Append(nil, &brlink.Frame{Type: brlink.Ack, Segments: 1, IDs: []brlink.ID{testID(1)}})
	add(af)
	f.Add(seed)
	f.Add([]byte{0, 28, 0xB1, 1, 0xC1, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<16 {
			return
		}
		const maxItem = 4096
		now := time.Unix(1_800_000_000, 0)
		for _, comp := range []string{"none", "frame", "link"} {
			l := testLink(t, comp, 512, maxItem)
			for b := in; len(b) >= 2; {
				n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
				l.receive(b[2:2+n], now)
				b = b[2+n:]
				if l.reasm.Bytes() > 4*maxItem {
					t.Fatalf("%s: holding %d bytes", comp, l.reasm.Bytes())
				}
				for _, e := range l.out {
					if e.Kind == Received && len(e.Item.Payload) > maxItem {
						t.Fatalf("%s: item of %d bytes", comp, len(e.Item.Payload))
					}
				}
				l.out = l.out[:0]
				if len(l.ctl) > maxCtl {
					t.Fatalf("%s: %d control frames queued", comp, len(l.ctl))
				}
			}
			l.tick(now.Add(time.Hour))
		}
	})
}

func TestBRLINKUnreachableIsDown(t *testing.T) {
	l := testLink(t, "link", 2048, 1<<20)
	now := time.Now()
	l.conn, l.up = &tcpConn{}, true
	l.queues[brlink.Routine] = []*txItem{{it: &Item{ID: testID(1)}}}
	l.queued = 1
	l.b.slots <- struct{}{}
	l.carrierEvent(carrierEvent{unreachable: ErrDown}, now)
	if len(l.out) != 1 || l.out[0].Kind != Down || !errors.Is(l.out[0].Err, ErrDown) {
		t.Fatalf("events %+v", l.out)
	}
	if l.up || l.queued != 0 || len(l.b.slots) != 0 {
		t.Fatalf("up %v, %d queued, %d slots held", l.up, l.queued, len(l.b.slots))
	}
	// A new HELLO (new nonce) is on its way, and further rejections while
	// handshaking change nothing.
	if len(l.ctl) != 1 || !l.awaitAck {
		t.Fatalf("%d control frames, awaiting %v", len(l.ctl), l.awaitAck)
	}
	l.carrierEvent(carrierEvent{unreachable: ErrDown}, now)
	if len(l.out) != 1 {
		t.Fatalf("events %+v", l.out)
	}
}
