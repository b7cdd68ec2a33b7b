package relay

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/linksim"
)

// TestBRLINKMeasureChatBytes reports the bytes on the link for a typical
// chat message (from, to, id, a 100-character body) in each compression
// mode, BRLINK header included, and checks DEFLATE pays for itself.
func TestBRLINKMeasureChatBytes(t *testing.T) {
	const n = 200
	avg := map[string]float64{}
	for _, comp := range []string{"none", "frame", "link"} {
		l := testLink(t, comp, 2048, 1<<20)
		rng := rand.New(rand.NewPCG(11, 12))
		raw, total, steady := 0, 0, 0
		for i := range n {
			p := chatMessage(rng, i)
			frames, err := l.encode(&Item{ID: testID(i), Class: brlink.ClassXMPP, Precedence: brlink.Routine, Payload: p})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range frames {
				total += len(f)
				if i >= n/2 {
					steady += len(f)
				}
			}
			raw += len(p)
		}
		avg[comp] = float64(total) / n
		t.Logf("%-5s: stanza %d bytes, on the link %.1f bytes per message (%.1f once the stream has history), %.0f%% of uncompressed",
			comp, raw/n, avg[comp], float64(steady)/(n/2), 100*float64(total)/float64(raw+n*brlink.HeaderLen))
	}
	if !(avg["link"] < avg["frame"] && avg["frame"] < avg["none"]) {
		t.Fatalf("bytes per message: %v; want link < frame < none", avg)
	}
}

// TestBRLINKMeasureUtilisation streams chat messages over a simulated
// 2,400 bit/s link and reports how much of the air time carried them.
func TestBRLINKMeasureUtilisation(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s of simulated HF")
	}
	t.Parallel()
	for _, comp := range []string{"frame", "link"} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			const rate, window = 2400, 20 * time.Second
			s := startSim(t, linksim.Config{Rate: rate, Latency: 500 * time.Millisecond})
			ba, bb := sisPeers(t, s, hfLink("ship", comp, rate), hfLink("shore", comp, rate))
			a, b := runPeer(t, ba), runPeer(t, bb)
			a.next(t, Up, 10*time.Second, nil)
			b.next(t, Up, 10*time.Second, nil)
			st0 := s.Stats()
			t0 := time.Now()
			rng := rand.New(rand.NewPCG(13, 14))
			ctx := context.Background()
			for i := range 200 { // more than the window can carry
				if err := a.Send(ctx, &Item{ID: testID(i), Class: brlink.ClassXMPP, Precedence: brlink.Routine, Payload: chatMessage(rng, i)}); err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			end := time.After(window)
		loop:
			for {
				select {
				case e := <-b.ev:
					if e.Kind == Received {
						got++
						e.Ack()
					}
				case <-end:
					break loop
				}
			}
			st := s.Stats()
			elapsed := time.Since(t0)
			air := st.AirBytes[0] - st0.AirBytes[0]
			util := float64(air*8) / (rate * elapsed.Seconds())
			t.Logf("%s: %d messages in %v (%.0f a minute), %d bytes on air A→B, utilisation %.0f%%; ACKs B→A %d bytes",
				comp, got, elapsed.Round(time.Millisecond), float64(got)/elapsed.Minutes(), air, 100*util, st.AirBytes[1]-st0.AirBytes[1])
			if util < 0.85 {
				t.Errorf("utilisation %.0f%%: pacing leaves the modem idle", 100*util)
			}
		})
	}
}
