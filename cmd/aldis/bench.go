package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aldis-im/aldis/irc/ircbench"
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
	fs.IntVar(&c.Users, "users", 100, "sessions to open (with --irc: XMPP users in the room, 3 unless given)")
	fs.StringVar(&c.TLS, "tls", "starttls", "none, starttls or direct")
	fs.BoolVar(&c.InsecureSkipVerify, "insecure", false, "accept any server certificate (test certificates)")
	fs.StringVar(&c.Mech, "mech", "PLAIN", "SASL mechanism: PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "parallel logins")
	fs.IntVar(&c.Rate, "rate", 5000, "offered messages/s in the fixed-load phase (0 skips it)")
	fs.DurationVar(&c.Duration, "duration", 0, "length of each message phase (default 10s)")
	fs.BoolVar(&c.Saturate, "saturate", true, "also run a saturating phase")
	fs.IntVar(&c.Window, "window", 10, "in-flight messages per sender when saturating (with --rooms or --big-room: 1 unless given; "+
		"with --irc: messages in flight in the throughput phases, 100 unless given)")
	var pids pidList
	fs.Var(&pids, "pid", "`[NAME=]PID` of a process to measure (CPU, and memory for one server); with --irc repeat it for "+
		"every process involved: --pid aldis=123 --pid inspircd=456")
	fs.IntVar(&c.BodySize, "body", 100, "message body bytes")
	fs.IntVar(&c.Rooms, "rooms", 0, "multi-user chat: rooms of --occupants sessions each, instead of 1:1 chat (uses accounts 0 … rooms×occupants−1)")
	fs.IntVar(&c.Occupants, "occupants", 20, "multi-user chat: occupants per room")
	fs.StringVar(&c.MUCDomain, "muc-domain", "", "multi-user chat: the MUC service's domain (default conference.<domain>)")
	fs.IntVar(&c.MUCRate, "muc-rate", 600, "multi-user chat: offered room messages/s over all rooms in the fixed phase; each is delivered to every occupant (0 skips it)")
	fs.IntVar(&c.BigRoom, "big-room", 0, "multi-user chat: also join this many sessions to one room and measure its latency (0 skips it)")
	fs.IntVar(&c.BigRoomRate, "big-room-rate", 2, "multi-user chat: offered messages/s in the big room")
	register := fs.Bool("register", false, "create the accounts first with in-band registration (XEP-0077)")
	var g ircbench.Config
	fs.StringVar(&g.IRCAddr, "irc", "", "IRC gateway scenario: the IRC server, host:port (plain TCP); the XMPP users join --room, "+
		"--irc-users IRC users join --irc-channel, and messages are timed and counted both ways")
	fs.StringVar(&g.Channel, "irc-channel", "#bench", "IRC gateway: the channel linked to --room")
	fs.StringVar(&g.Room, "room", "", "IRC gateway: bare JID of the room linked to --irc-channel: with aldis's gateway a room of its "+
		"MUC service (bench@conference.<domain>), with Biboumi the channel's JID (#bench%irc.host@biboumi.<domain>); "+
		"the first XMPP user creates it if it does not exist")
	fs.IntVar(&g.IRCUsers, "irc-users", 2, "IRC gateway: IRC users in the channel")
	fs.StringVar(&g.NickPattern, "irc-nicks", "ircb%d", "IRC gateway: nick pattern of the IRC users")
	fs.IntVar(&g.LatencyMessages, "irc-latency", 300, "IRC gateway: messages each way sent one at a time for latency")
	fs.IntVar(&g.Burst, "irc-burst", 2000, "IRC gateway: messages each way in the throughput phase, at most --window in flight")
	fs.DurationVar(&g.ReadyTimeout, "ready-timeout", time.Minute, "IRC gateway: how long the setup and the first messages "+
		"across the gateway may take before the run fails (is the room linked?)")
	fs.DurationVar(&g.LostAfter, "lost-after", 5*time.Second, "IRC gateway: a message missing this long stops holding up the window; "+
		"a phase fails after three times as long without any delivery")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "aldis bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if c.Password == "" {
		c.Password = os.Getenv("ALDIS_BENCH_PASSWORD")
	}
	c.Log = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if g.IRCAddr != "" {
		if !given["users"] {
			c.Users = 3
		}
		if !given["window"] {
			c.Window = 100
		}
		if g.Room == "" {
			fmt.Fprintln(stderr, "aldis bench: --irc needs --room, the room linked to the channel")
			return 2
		}
		g.XMPP, g.Window, g.Processes, g.Log = c, c.Window, pids, stderr
		if *register {
			if err := loadgen.Register(ctx, c, c.Users); err != nil {
				fmt.Fprintln(stderr, "aldis bench: register:", err)
				return 1
			}
		}
		res, err := ircbench.Run(ctx, g)
		if len(res.Phases) > 0 {
			fmt.Fprint(stdout, res.Table())
		}
		if err != nil {
			fmt.Fprintln(stderr, "aldis bench:", err)
			return 1
		}
		return 0
	}

	if len(pids) > 1 {
		fmt.Fprintln(stderr, "aldis bench: more than one --pid is only for --irc")
		return 2
	}
	if len(pids) == 1 {
		c.ServerPID = pids[0].PID
	}
	muc := c.Rooms > 0 || c.BigRoom > 0
	if muc && !given["window"] {
		c.Window = 0 // RunMUC's default: one message in flight per occupant
	}
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

// pidList is the --pid flag: processes to measure, each NAME=PID or a bare PID (named after its
// command).
type pidList []ircbench.Process

func (l *pidList) String() string {
	if l == nil {
		return ""
	}
	var s []string
	for _, p := range *l {
		s = append(s, fmt.Sprintf("%s=%d", p.Name, p.PID))
	}
	return strings.Join(s, ",")
}

func (l *pidList) Set(v string) error {
	name, num, named := strings.Cut(v, "=")
	if !named {
		num = v
	}
	pid, err := strconv.Atoi(num)
	if err != nil || pid < 0 {
		return fmt.Errorf("want [NAME=]PID, not %q", v)
	}
	if pid == 0 {
		return nil // the old default: nothing to measure
	}
	if !named {
		name = "pid" + num
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			name = strings.TrimSpace(string(comm))
		}
	}
	if name == "" {
		return fmt.Errorf("empty process name in %q", v)
	}
	*l = append(*l, ircbench.Process{Name: name, PID: pid})
	return nil
}
