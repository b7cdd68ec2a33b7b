package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c loadgen.Config
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:5222", "c2s address of the server under test")
	fs.StringVar(&c.Domain, "domain", "localhost", "XMPP domain")
	fs.StringVar(&c.UserPattern, "users-pattern", "bench%d", "account name pattern")
	fs.StringVar(&c.Password, "password", "", "password of every bench account (or ALDIS_BENCH_PASSWORD)")
	fs.IntVar(&c.Users, "users", 100, "sessions to open")
	fs.StringVar(&c.TLS, "tls", "starttls", "none, starttls or direct")
	fs.BoolVar(&c.InsecureSkipVerify, "insecure", false, "accept any server certificate (test certificates)")
	fs.StringVar(&c.Mech, "mech", "PLAIN", "SASL mechanism: PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "parallel logins")
	fs.IntVar(&c.Rate, "rate", 5000, "offered messages/s in the fixed-load phase (0 skips it)")
	fs.DurationVar(&c.Duration, "duration", 0, "length of each message phase (default 10s)")
	fs.BoolVar(&c.Saturate, "saturate", true, "also run a saturating phase")
	fs.IntVar(&c.Window, "window", 10, "in-flight messages per sender when saturating (with --rooms or --big-room: 1 unless given)")
	fs.IntVar(&c.ServerPID, "pid", 0, "server process id, to measure its CPU and memory")
	fs.IntVar(&c.BodySize, "body", 100, "message body bytes")
	fs.IntVar(&c.Rooms, "rooms", 0, "multi-user chat: rooms of --occupants sessions each, instead of 1:1 chat (uses accounts 0 … rooms×occupants−1)")
	fs.IntVar(&c.Occupants, "occupants", 20, "multi-user chat: occupants per room")
	fs.StringVar(&c.MUCDomain, "muc-domain", "", "multi-user chat: the MUC service's domain (default conference.<domain>)")
	fs.IntVar(&c.MUCRate, "muc-rate", 600, "multi-user chat: offered room messages/s over all rooms in the fixed phase; each is delivered to every occupant (0 skips it)")
	fs.IntVar(&c.BigRoom, "big-room", 0, "multi-user chat: also join this many sessions to one room and measure its latency (0 skips it)")
	fs.IntVar(&c.BigRoomRate, "big-room-rate", 2, "multi-user chat: offered messages/s in the big room")
	register := fs.Bool("register", false, "create the accounts first with in-band registration (XEP-0077)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	muc := c.Rooms > 0 || c.BigRoom > 0
	if muc {
		window := false
		fs.Visit(func(f *flag.Flag) { window = window || f.Name == "window" })
		if !window {
			c.Window = 0 // RunMUC's default: one message in flight per occupant
		}
	}
	if c.Password == "" {
		c.Password = os.Getenv("ALDIS_BENCH_PASSWORD")
	}
	c.Log = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *register {
		n := c.Users
		if muc {
			n = max(c.Rooms*c.Occupants, c.BigRoom)
		}
		if err := loadgen.Register(ctx, c, n); err != nil {
			fmt.Fprintln(stderr, "aldis bench: register:", err)
			return 1
		}
	}
	run := loadgen.Run
	if muc {
		run = loadgen.RunMUC
	}
	res, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "aldis bench:", err)
		return 1
	}
	fmt.Fprint(stdout, res.Table())
	return 0
}
