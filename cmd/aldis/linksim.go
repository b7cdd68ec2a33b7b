package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aldis-im/aldis/bridges/brass/linksim"
	"github.com/aldis-im/aldis/bridges/brass/sis"
)

// outageFlags collects repeated --outage DURATION@START flags.
type outageFlags []linksim.Outage

func (o *outageFlags) String() string {
	var s []string
	for _, x := range *o {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func (o *outageFlags) Set(v string) error {
	x, err := linksim.ParseOutage(v)
	if err != nil {
		return err
	}
	*o = append(*o, x)
	return nil
}

// cmdLinksim runs the HF link simulator: two STANAG 5066 SIS nodes joined
// by a simulated radio link.
func cmdLinksim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linksim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c linksim.Config
	var outages outageFlags
	fs.StringVar(&c.ListenA, "a", "127.0.0.1:5066", "SIS listen address of end A")
	fs.StringVar(&c.ListenB, "b", "127.0.0.1:5067", "SIS listen address of end B")
	nodeA := fs.String("node-a", "0.0.0.1", "STANAG 5066 node address of end A")
	nodeB := fs.String("node-b", "0.0.0.2", "STANAG 5066 node address of end B")
	fs.IntVar(&c.Rate, "rate", 2400, "bit/s each way")
	fs.DurationVar(&c.Latency, "latency", 0, "one-way latency added to each U_PDU")
	fs.Float64Var(&c.Loss, "loss", 0, "probability that a transmission is lost (ARQ repeats it; non-ARQ loses it)")
	fs.Var(&outages, "outage", "scheduled outage DURATION@START from startup, e.g. 30s@60s (repeatable)")
	fs.IntVar(&c.Overhead, "overhead", 0, "bytes of lower-layer headers counted on air per U_PDU")
	fs.IntVar(&c.Buffer, "buffer", 16384, "queued bytes per direction before S_DATA_FLOW_OFF")
	fs.IntVar(&c.MTU, "mtu", sis.DefaultMTU, "MTU offered to clients")
	seed := fs.Uint64("seed", 1, "random seed for losses")
	verbose := fs.Bool("v", false, "log debug detail")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if c.NodeA, err = sis.ParseAddr(*nodeA); err != nil {
		fmt.Fprintln(stderr, "aldis linksim:", err)
		return 2
	}
	if c.NodeB, err = sis.ParseAddr(*nodeB); err != nil {
		fmt.Fprintln(stderr, "aldis linksim:", err)
		return 2
	}
	c.Outages, c.Seed = outages, *seed
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	sim, err := linksim.New(c)
	if err != nil {
		fmt.Fprintln(stderr, "aldis linksim:", err)
		return 1
	}
	a, b := sim.Addrs()
	fmt.Fprintf(stdout, "linksim: end A %s (node %s), end B %s (node %s), %d bit/s, latency %v, loss %v, outages [%s]\n",
		a, c.NodeA, b, c.NodeB, c.Rate, c.Latency, c.Loss, outages.String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim.Run(ctx)
	st := sim.Stats()
	fmt.Fprintf(stdout, "linksim: A→B %d bytes on air, %d delivered, %d lost; B→A %d bytes, %d delivered, %d lost\n",
		st.AirBytes[0], st.Delivered[0], st.Lost[0], st.AirBytes[1], st.Delivered[1], st.Lost[1])
	return 0
}
