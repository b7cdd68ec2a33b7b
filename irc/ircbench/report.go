package ircbench

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

// Table renders the result as a human-readable summary: one row per phase, with each measured
// process's CPU time per 1,000 messages, their total, and the benchmark's own.
func (r Result) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "IRC gateway: %d XMPP users in %s, %d IRC users in %s on %s; messages crossed both ways after %s\n",
		r.XMPPUsers, r.Room, r.IRCUsers, r.Channel, r.IRCAddr, loadgen.Short(r.Ready))
	if len(r.Phases) == 0 {
		return b.String()
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "direction\tphase\tsent\tdelivered\tlost\tduplicates\terrors\tmsg/s\tp50\tp99\t"
	for _, p := range r.Processes {
		head += p + " CPU/1k\t"
	}
	if len(r.Processes) > 0 {
		head += "total CPU/1k\t"
	}
	fmt.Fprintln(tw, head+"bench CPU/1k\t")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%s\t%s\t", p.Direction, p.Name, p.Sent, p.Delivered, p.Lost(),
			p.Duplicates, p.Errors, p.MessagesPerSec, loadgen.Short(p.P50), loadgen.Short(p.P99))
		for i := range r.Processes {
			if i < len(p.CPUPer1000) {
				fmt.Fprintf(tw, "%s\t", ms(p.CPUPer1000[i]))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		if len(r.Processes) > 0 {
			if len(p.CPUPer1000) > 0 {
				fmt.Fprintf(tw, "%s\t", ms(p.CPUTotalPer1000()))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintf(tw, "%s\t\n", ms(p.BenchPer1000))
	}
	tw.Flush()
	fmt.Fprintf(&b, "(each message is due once at every user on the other side: %d XMPP users from IRC, %d IRC users from XMPP; "+
		"latency sends one message at a time, throughput keeps at most %d in flight; CPU is per 1,000 messages sent, "+
		"read from /proc in 10 ms ticks)\n", r.XMPPUsers, r.IRCUsers, r.Window)
	return b.String()
}

// ms renders a CPU time in milliseconds with one decimal.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
