package loadgen

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Table renders the result as a human-readable summary.
func (r Result) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "logins: %d ok, %d failed, %.1f/s\n", r.Logins, r.LoginErrors, r.LoginsPerSec)
	if r.MemPerConnKiB != 0 {
		fmt.Fprintf(&b, "server memory per idle connection: %.1f KiB\n", r.MemPerConnKiB)
	}
	for _, s := range r.RoomSets {
		fmt.Fprintf(&b, "%s: %d of %d sessions joined in %s (%d rooms created, %d not joined)\n",
			s.Name, s.Joined, s.Sessions, Short(s.JoinTime), s.Created, s.NotJoined)
	}
	if len(r.Phases) == 0 {
		return b.String()
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tsent\tdelivered\tlost\terrors\tdelivered/s\tp50\tp99\tserver CPU/1k\tloadgen CPU/1k\t")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t\n",
			p.Name, p.Sent, p.Delivered, p.Lost(), p.Errors, p.DeliveredPerSec,
			Short(p.P50), Short(p.P99), orDash(p.CPUPer1000), orDash(p.LoadgenPer1000))
	}
	tw.Flush()
	if len(r.RoomSets) > 0 {
		b.WriteString("(room phases count deliveries: each message once per occupant of its room, the sender's echo included)\n")
	}
	return b.String()
}

// Short rounds d to three significant digits, for result tables.
func Short(d time.Duration) string {
	for unit := time.Duration(1); unit < time.Hour; unit *= 10 {
		if d < 1000*unit {
			return d.Round(unit).String()
		}
	}
	return d.Round(time.Second).String()
}

func orDash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return Short(d)
}
