package irc

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/format"
	"github.com/aldis-im/aldis/irc/irctest"
)

func BenchmarkParseLine(b *testing.B) {
	line := "@time=2024-01-01T00:00:00.000Z;msgid=abc123;account=bob :bob!~bob@host.example PRIVMSG #channel :hello there, this is a message of ordinary length"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromIRC(b *testing.B) {
	text := "hello \x02bold\x02 and \x0304red\x03 and \x1ditalic\x1d text of ordinary length"
	b.ReportAllocs()
	for b.Loop() {
		format.FromIRC(text)
	}
}

// TestPeerLatency measures a message's way from one Client through InspIRCd (no fakelag) to
// another: what the IRC side adds to a bridged message. Run with ALDIS_BENCH=1.
func TestPeerLatency(t *testing.T) {
	if os.Getenv("ALDIS_BENCH") == "" {
		t.Skip("set ALDIS_BENCH=1 to measure")
	}
	forEachPeer(t, func(t *testing.T, srv *irctest.Server, p peer) {
		if p.name == "ngircd" {
			// ngIRCd's own flood penalty (about a line a second per client after a short burst) can't
			// be turned off: its figure would be its rule, not our cost.
			t.Skip("ngIRCd paces clients itself")
		}
		unpaced := func(c *Config) { c.Rate, c.Burst = 1e6, 1000 } // the server has no fakelag either
		a := peerClient(t, srv, "sender", unpaced)
		b := peerClient(t, srv, "reader", unpaced)
		a.Join("#lat", "")
		b.Join("#lat", "")
		waitEvent(t, b, Received, func(ev Event) bool { return ev.Msg.Command == "JOIN" && ev.Msg.Nick() == "sender" })
		const n = 2000
		lat := make([]time.Duration, 0, n)
		start := time.Now()
		for i := range n {
			sent := time.Now()
			if err := a.Privmsg("#lat", "m"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
			waitEvent(t, b, Received, func(ev Event) bool {
				return ev.Msg.Command == "PRIVMSG" && strings.HasPrefix(Param(&ev.Msg, 1), "m"+strconv.Itoa(i))
			})
			lat = append(lat, time.Since(sent))
		}
		total := time.Since(start)
		slices.Sort(lat)
		t.Logf("%s: %d messages one at a time: p50 %v, p99 %v, %.0f msg/s", p.name, n,
			lat[n/2].Round(time.Microsecond), lat[n*99/100].Round(time.Microsecond), n/total.Seconds())
	})
}
