package relay

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

func chatStanza(i int) []byte {
	return fmt.Appendf(nil, `<message from='alice@ship.example/deck' to='bob@shore.example' id='m%05d' type='chat'><body>Position report %d: course 270, speed 12 knots, all well aboard; next report at 1800Z.</body></message>`, i, i)
}

func TestBRLINKFrameDeflateChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 20000)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	var text []byte
	for i := range 200 {
		text = append(text, chatStanza(i)...)
	}
	for name, p := range map[string][]byte{"empty": {}, "small": chatStanza(1), "text": text, "noise": noise} {
		for _, room := range []int{100, 500, 2020} {
			var d frameDeflater
			chunks, err := d.chunks(p, room)
			if err != nil {
				t.Fatalf("%s/%d: %v", name, room, err)
			}
			var got []byte
			size := 0
			for _, c := range chunks {
				if len(c) > room {
					t.Fatalf("%s/%d: chunk of %d bytes", name, room, len(c))
				}
				out, err := inflateFrame(c, 1<<20)
				if err != nil {
					t.Fatalf("%s/%d: %v", name, room, err)
				}
				got = append(got, out...)
				size += len(c)
			}
			if !bytes.Equal(got, p) {
				t.Fatalf("%s/%d: round trip differs", name, room)
			}
			t.Logf("%s, room %d: %d bytes → %d chunks, %d bytes", name, room, len(p), len(chunks), size)
		}
	}
}

func TestBRLINKInflateFrameLimit(t *testing.T) {
	var d frameDeflater
	bomb, err := d.compress(make([]byte, 10<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inflateFrame(bomb, 1<<20); !errors.Is(err, errInflateLimit) {
		t.Fatalf("10 MiB of zeros (%d bytes deflated) under a 1 MiB limit: %v", len(bomb), err)
	}
}

func TestBRLINKLinkDeflate(t *testing.T) {
	var d linkDeflater
	in := linkInflater{limit: 1 << 20}
	send := func(prec brlink.Precedence, p []byte) []byte {
		t.Helper()
		c, err := d.compress(prec, p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	recv := func(prec brlink.Precedence, c, want []byte) {
		t.Helper()
		got, err := in.inflate(prec, c)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	// Streams per precedence are independent: interleaving them is fine.
	first, second := len(send(brlink.Routine, chatStanza(0))), 0
	d.reset()
	in = linkInflater{limit: 1 << 20}
	var cs [][]byte
	for i := range 10 {
		cs = append(cs, send(brlink.Routine, chatStanza(i)))
	}
	f := send(brlink.Flash, []byte("<message><body>flash</body></message>"))
	recv(brlink.Routine, cs[0], chatStanza(0))
	recv(brlink.Flash, f, []byte("<message><body>flash</body></message>"))
	for i := 1; i < 10; i++ {
		recv(brlink.Routine, cs[i], chatStanza(i))
	}
	second = len(cs[1])
	t.Logf("chat stanza of %d bytes: first item %d bytes, later ones %d", len(chatStanza(1)), first, second)
	if second >= first {
		t.Errorf("the shared history did not help: %d then %d bytes", first, second)
	}

	// A lost item breaks the stream until the sender resets.
	lost := send(brlink.Routine, chatStanza(10))
	_ = lost
	if _, err := in.inflate(brlink.Routine, send(brlink.Routine, chatStanza(11))); !errors.Is(err, errStreamGap) {
		t.Fatalf("after a lost item: %v", err)
	}
	if _, err := in.inflate(brlink.Routine, send(brlink.Routine, chatStanza(12))); !errors.Is(err, errStreamBroken) {
		t.Fatalf("broken stream: %v", err)
	}
	d.reset()
	recv(brlink.Routine, send(brlink.Routine, chatStanza(13)), chatStanza(13))
	recv(brlink.Routine, send(brlink.Routine, chatStanza(14)), chatStanza(14))

	// A receiver that restarted joins mid-stream: a suffix decodes or
	// fails, never silently differs.
	fresh := linkInflater{limit: 1 << 20}
	for i := 15; i < 30; i++ {
		p := chatStanza(i)
		got, err := fresh.inflate(brlink.Routine, send(brlink.Routine, p))
		if err == nil && !bytes.Equal(got, p) {
			t.Fatalf("item %d decoded wrongly", i)
		}
	}

	// A length over the limit is refused without allocating it.
	small := linkInflater{limit: 100}
	d.reset()
	if _, err := small.inflate(brlink.Routine, send(brlink.Routine, make([]byte, 101))); !errors.Is(err, errInflateLimit) {
		t.Fatalf("over the limit: %v", err)
	}
}

// After the sender restarts its streams, frames of the old stream still in
// the modem's queue are dropped as stale rather than joined; a restarted
// sender that happens to draw a retired epoch is still heard.
func TestBRLINKLinkInflateStale(t *testing.T) {
	var d linkDeflater
	in := linkInflater{limit: 1 << 20}
	var old [][]byte
	for i := range 6 {
		c, err := d.compress(brlink.Routine, chatStanza(i))
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, c)
	}
	for _, c := range old[:3] {
		if _, err := in.inflate(brlink.Routine, c); err != nil {
			t.Fatal(err)
		}
	}
	oldEpoch := d.epoch
	d.reset()
	in.forget() // the peer's new nonce was seen
	fresh, _ := d.compress(brlink.Routine, chatStanza(10))
	if got, err := in.inflate(brlink.Routine, fresh); err != nil || !bytes.Equal(got, chatStanza(10)) {
		t.Fatalf("new stream: %v", err)
	}
	// Old items 3..5 were still queued in the modem.
	for _, c := range old[3:] {
		if _, err := in.inflate(brlink.Routine, c); !errors.Is(err, errStale) {
			t.Fatalf("old stream's item: %v", err)
		}
	}
	next, _ := d.compress(brlink.Routine, chatStanza(11))
	if got, err := in.inflate(brlink.Routine, next); err != nil || !bytes.Equal(got, chatStanza(11)) {
		t.Fatalf("new stream after stale items: %v", err)
	}

	// A restarted sender drawing the retired epoch starts at sequence 0.
	restarted := linkDeflater{epoch: oldEpoch - 1}
	restarted.reset()
	if restarted.epoch != oldEpoch {
		t.Fatal("test setup")
	}
	in.forget()
	for i := range 5 {
		c, _ := restarted.compress(brlink.Routine, chatStanza(20+i))
		if got, err := in.inflate(brlink.Routine, c); err != nil || !bytes.Equal(got, chatStanza(20+i)) {
			t.Fatalf("restarted sender with a retired epoch, item %d: %v", i, err)
		}
	}
}
