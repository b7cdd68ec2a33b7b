// Package ircbench measures an XMPP⇄IRC gateway from outside, the same way
// for any XMPP server and gateway: XMPP users in a room, IRC users in the
// channel linked to it, messages timed and counted both ways.
package ircbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

// Config describes one run. Zero fields take the defaults noted.
type Config struct {
	// XMPP says how the XMPP users log in (Addr, Domain, UserPattern, Password, TLS, Mech,
	// InsecureSkipVerify, Concurrency) and how many there are (Users, default 3); BodySize is the
	// size of every message's text in both directions (default 100, at most 400). Its 1:1 and
	// multi-user chat fields are ignored.
	XMPP loadgen.Config
	// Room is the bare JID of the room linked to Channel: with Aldis's gateway a room of its MUC
	// service (bench@conference.example.org), with Biboumi the channel's own JID
	// (#bench%irc.example.org@biboumi.example.org). The XMPP users join it with their account
	// names as nicks; the first creates it when it does not exist.
	Room string
	// IRCAddr is the IRC server's host:port (plain TCP), and Channel the channel there.
	IRCAddr, Channel string
	// IRCUsers is how many IRC users join Channel; default 2.
	IRCUsers int
	// NickPattern is the fmt pattern of their nicks; default "ircb%d".
	NickPattern string
	// LatencyMessages is how many messages are sent each way one at a time, each once every
	// receiver has the one before; default 300.
	LatencyMessages int
	// Burst is how many messages are sent each way in the throughput phase, with at most Window
	// (default 100) sent and not yet at every receiver; default 2000.
	Burst, Window int
	// Processes are the processes whose CPU time is measured: the XMPP server, the gateway, the
	// IRC server, whatever takes part.
	Processes []Process
	// ReadyTimeout bounds the setup: IRC registrations, and the wait until the gateway carries
	// messages both ways (a gateway may join a new room only after a while); default 60s.
	ReadyTimeout time.Duration
	// LostAfter is how long a delivery may be missing before its message no longer holds up the
	// window (it still counts if it arrives before the phase ends); a phase ends this long after
	// the last delivery, and fails when nothing arrives for three times as long; default 5s.
	LostAfter time.Duration
	// Log receives progress lines; may be nil.
	Log io.Writer
}

// Process is a process to measure, by name and PID.
type Process struct {
	Name string
	PID  int
}

// Direction is which way a phase's messages cross the gateway.
type Direction int

// The two directions.
const (
	IRCToXMPP Direction = iota // said in the channel, received in the room
	XMPPToIRC                  // said in the room, received in the channel
)

func (d Direction) String() string {
	if d == IRCToXMPP {
		return "IRC→XMPP"
	}
	return "XMPP→IRC"
}

// Result is the outcome of a run.
type Result struct {
	Room, Channel, IRCAddr string
	XMPPUsers, IRCUsers    int
	Window                 int
	Processes              []string // names, in Config.Processes order
	// Ready is how long the gateway took, from the first probe, to carry messages both ways.
	Ready  time.Duration
	Phases []Phase
}

// Phase is one measured batch of messages in one direction. Each message is expected once at
// every user on the other side: Expected is Sent × those users.
type Phase struct {
	Direction  Direction
	Name       string // "latency" or "throughput"
	Sent       int
	Expected   int // deliveries due
	Delivered  int // distinct deliveries: a message counts at most once per receiver
	Duplicates int // further copies of a message a receiver already had
	Errors     int // messages that came back as errors (XMPP type='error')
	// MessagesPerSec is deliveries per receiver per second, from the first message sent to the
	// last delivery.
	MessagesPerSec float64
	// P50 and P99 run from the sender's write to each receiver's read.
	P50, P99 time.Duration
	// CPUPer1000 is each process's CPU time (user+system) per 1,000 messages sent, in
	// Config.Processes order; BenchPer1000 the benchmark's own.
	CPUPer1000   []time.Duration
	BenchPer1000 time.Duration
}

// Lost is how many deliveries never arrived, bounced messages' included.
func (p Phase) Lost() int { return p.Expected - p.Delivered }

// CPUTotalPer1000 is the sum over the measured processes.
func (p Phase) CPUTotalPer1000() time.Duration {
	var t time.Duration
	for _, c := range p.CPUPer1000 {
		t += c
	}
	return t
}

const maxBody = 400 // an IRC line has 512 bytes, prefix and command included

func (c *Config) setDefaults() error {
	if c.Room == "" || c.IRCAddr == "" || c.Channel == "" {
		return errors.New("ircbench: the room, the IRC server and the channel are required")
	}
	if strings.ContainsAny(c.Channel, " ,\r\n\x00\x07") {
		return fmt.Errorf("ircbench: bad channel name %q", c.Channel)
	}
	if c.XMPP.Users <= 0 {
		c.XMPP.Users = 3
	}
	if c.XMPP.BodySize <= 0 {
		c.XMPP.BodySize = 100
	}
	if c.XMPP.BodySize > maxBody {
		return fmt.Errorf("ircbench: message size %d is more than an IRC line carries (%d)", c.XMPP.BodySize, maxBody)
	}
	if c.IRCUsers <= 0 {
		c.IRCUsers = 2
	}
	if c.NickPattern == "" {
		c.NickPattern = "ircb%d"
	}
	if !strings.Contains(c.NickPattern, "%d") {
		return fmt.Errorf("ircbench: nick pattern %q has no %%d", c.NickPattern)
	}
	if c.LatencyMessages <= 0 {
		c.LatencyMessages = 300
	}
	if c.Burst <= 0 {
		c.Burst = 2000
	}
	if c.Window <= 0 {
		c.Window = 100
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.LostAfter <= 0 {
		c.LostAfter = 5 * time.Second
	}
	for _, p := range c.Processes {
		if p.Name == "" || p.PID <= 0 {
			return fmt.Errorf("ircbench: process %q with PID %d", p.Name, p.PID)
		}
	}
	return nil
}

// Run logs the XMPP users in and joins them to the room, registers the IRC users and joins them
// to the channel, waits until the gateway carries messages both ways, then measures each way:
// latency with one message at a time, then throughput with at most Window messages in flight.
// Setup failures, a gateway that carries nothing within ReadyTimeout and a gateway that stops
// carrying messages end it with an error; the phases measured by then are in the result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	b := newBench(cfg)
	if _, err := b.cpu(); err != nil {
		return Result{}, err
	}
	b.logf("logging in %d XMPP users at %s", cfg.XMPP.Users, cfg.XMPP.Addr)
	xs, err := loadgen.Login(ctx, cfg.XMPP, b.onXMPP)
	if err != nil {
		return Result{}, fmt.Errorf("ircbench: %w", err)
	}
	defer xs.Close()
	if _, err := xs.JoinRoom(ctx, cfg.Room); err != nil {
		return Result{}, fmt.Errorf("ircbench: %w", err)
	}
	b.logf("%d XMPP users in %s; connecting %d IRC users to %s", xs.Len(), cfg.Room, cfg.IRCUsers, cfg.IRCAddr)
	irc, err := b.dialIRC(ctx)
	if err != nil {
		return Result{}, err
	}
	defer irc.close()
	return b.run(ctx, xmppSide{xs}, irc)
}

// side is the users on one side of the gateway, as the scenario drives them.
type side interface {
	Len() int
	Name(i int) string
	// Send has user i say text in the room or channel.
	Send(i int, text string) error
	// Inbound counts what the users have received so far, to tell when the servers are quiet.
	Inbound() int64
}

// xmppSide is the XMPP users in the room.
type xmppSide struct{ s *loadgen.Sessions }

func (x xmppSide) Len() int                      { return x.s.Len() }
func (x xmppSide) Name(i int) string             { return x.s.Nick(i) }
func (x xmppSide) Send(i int, text string) error { return x.s.SendToRoom(i, text) }
func (x xmppSide) Inbound() int64                { return x.s.Inbound() }

// ircSide is the IRC users in the channel.
type ircSide []*ircUser

func (s ircSide) Len() int          { return len(s) }
func (s ircSide) Name(i int) string { return s[i].nick }

func (s ircSide) Send(i int, text string) error {
	if err := s[i].say(text); err != nil {
		if dead := s[i].alive(); dead != nil {
			return dead
		}
		return err
	}
	return nil
}

func (s ircSide) Inbound() int64 {
	var n int64
	for _, u := range s {
		n += u.lines.Load()
	}
	return n
}

func (s ircSide) close() {
	var wg sync.WaitGroup
	for _, u := range s {
		wg.Go(u.close)
	}
	wg.Wait()
}

// dialIRC connects the IRC users one after the other, within ReadyTimeout.
func (b *bench) dialIRC(ctx context.Context) (ircSide, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ReadyTimeout)
	defer cancel()
	var users ircSide
	for i := range b.cfg.IRCUsers {
		u, err := dialIRC(ctx, b.cfg.IRCAddr, fmt.Sprintf(b.cfg.NickPattern, i), b.cfg.Channel, b.onIRC(i))
		if err != nil {
			users.close()
			return nil, fmt.Errorf("ircbench: %w", err)
		}
		users = append(users, u)
	}
	return users, nil
}

func newTag() string {
	var t [4]byte
	rand.Read(t[:])
	return "ib" + hex.EncodeToString(t[:])
}
