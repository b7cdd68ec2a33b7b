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
	fs.IntVar(&c.Window, "window", 10, "in-flight messages per sender when saturating")
	fs.IntVar(&c.ServerPID, "pid", 0, "server process id, to measure its CPU and memory")
	fs.IntVar(&c.BodySize, "body", 100, "message body bytes")
	register := fs.Bool("register", false, "create the accounts first with in-band registration (XEP-0077)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.Password == "" {
		c.Password = os.Getenv("ALDIS_BENCH_PASSWORD")
	}
	c.Log = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *register {
		if err := loadgen.Register(ctx, c, c.Users); err != nil {
			fmt.Fprintln(stderr, "aldis bench: register:", err)
			return 1
		}
	}
	res, err := loadgen.Run(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "aldis bench:", err)
		return 1
	}
	fmt.Fprint(stdout, res.Table())
	return 0
}
