package ircbench

import (
	"testing"
	"time"
)

func TestPhaseTextAndSeq(t *testing.T) {
	p := newPhase(IRCToXMPP, "latency", []byte("ib00.3 "), 1000, 2)
	pad := "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	for _, seq := range []int{0, 7, 999} {
		text := p.text(seq, 40, pad)
		if len(text) != 40 {
			t.Errorf("text(%d) = %q: %d bytes, want 40", seq, text, len(text))
		}
		if got, ok := p.seq([]byte(text)); !ok || got != seq {
			t.Errorf("seq(%q) = %d, %v", text, got, ok)
		}
		// A gateway relaying for a user through its own nick prefixes the text.
		if got, ok := p.seq([]byte("<alice> " + text)); !ok || got != seq {
			t.Errorf("seq of a prefixed text = %d, %v", got, ok)
		}
	}
	if short := p.text(5, 3, pad); short != "ib00.3 5" {
		t.Errorf("text shorter than the token = %q", short)
	}
	for _, text := range []string{
		"", "hello", "ib00.3", "ib00.3 ", "ib00.3 x", "ib00.30 1", "ib00.3 1000", "ib00.3 99999999999", "ib00.4 1",
	} {
		if seq, ok := p.seq([]byte(text)); ok {
			t.Errorf("seq(%q) = %d, want none", text, seq)
		}
	}
}

func TestPhaseCounts(t *testing.T) {
	p := newPhase(XMPPToIRC, "throughput", []byte("t "), 4, 2)
	p.deliver(0, 0, 100) // not sent yet: a stale copy
	if p.delivered.Load() != 0 {
		t.Fatal("a message never sent was counted")
	}
	p.markSent(0, 1000)
	p.markSent(1, 2000)
	p.markSent(2, 3000)
	p.deliver(0, 0, 1500)
	if p.finished(0) || p.complete.Load() != 0 {
		t.Error("finished with one receiver of two")
	}
	p.deliver(1, 0, 1700)
	p.deliver(1, 0, 1800) // a duplicate
	p.deliver(5, 1, 1800) // no such receiver
	p.deliver(0, 1, 2100)
	p.bounce(2)
	p.bounce(2)
	p.bounce(3) // never sent
	if !p.finished(0) || p.finished(1) || !p.finished(2) || p.finished(3) {
		t.Errorf("finished: %v %v %v %v", p.finished(0), p.finished(1), p.finished(2), p.finished(3))
	}
	if p.sent.Load() != 3 || p.delivered.Load() != 3 || p.duplicates.Load() != 1 || p.errors.Load() != 1 || p.complete.Load() != 1 {
		t.Errorf("sent %d delivered %d duplicates %d errors %d complete %d", p.sent.Load(), p.delivered.Load(),
			p.duplicates.Load(), p.errors.Load(), p.complete.Load())
	}
	if p.last.Load() != 2100 {
		t.Errorf("last delivery at %d", p.last.Load())
	}
	if p.receiverCount(0) != 2 || p.receiverCount(1) != 1 {
		t.Errorf("per receiver %d, %d", p.receiverCount(0), p.receiverCount(1))
	}
	// Latencies 500, 700, 100 ns.
	if p50, p99 := p.percentiles(); p50 != 500 || p99 != 700 {
		t.Errorf("p50 %v, p99 %v", p50, p99)
	}
}

func TestPercentilesNearestRank(t *testing.T) {
	p := newPhase(IRCToXMPP, "latency", []byte("t "), 100, 1)
	if p50, p99 := p.percentiles(); p50 != 0 || p99 != 0 {
		t.Errorf("empty: %v %v", p50, p99)
	}
	for i := range 100 {
		p.markSent(i, 1)
		p.deliver(0, i, 1+int64(i+1)*int64(time.Millisecond))
	}
	if p50, p99 := p.percentiles(); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50 %v, p99 %v", p50, p99)
	}
}
