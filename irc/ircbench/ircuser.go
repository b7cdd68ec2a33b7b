package ircbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/irc"
)

const (
	// ircWriteTimeout bounds one line's write to a server that stopped reading.
	ircWriteTimeout = 10 * time.Second
	// nickTries is how many nicks a user tries (the pattern's, then with "_" appended) when the
	// server says one is taken.
	nickTries = 5
)

// ircUser is one plain IRC client in the channel: registered with NICK and USER (no CAP, no
// SASL), joined, and then reading every line so that the server never stalls on it. Lines of
// PRIVMSG and NOTICE go to onText on its reader goroutine; PINGs are answered there.
type ircUser struct {
	nick    string // as the server registered it
	channel string
	conn    net.Conn
	sc      *bufio.Scanner
	onText  func(text string)
	lines   atomic.Int64 // lines read since the join, to tell when the server is quiet

	wmu  sync.Mutex // one writer at a time: the bench's sender and the reader's PONGs
	done chan struct{}
	err  error // why the reader stopped; valid once done is closed
}

// joinError is a numeric the server answers a JOIN with when it refuses it.
var joinErrors = map[string]bool{
	"403": true, // ERR_NOSUCHCHANNEL
	"405": true, // ERR_TOOMANYCHANNELS
	"471": true, // ERR_CHANNELISFULL
	"473": true, // ERR_INVITEONLYCHAN
	"474": true, // ERR_BANNEDFROMCHAN
	"475": true, // ERR_BADCHANNELKEY
	"477": true, // ERR_NEEDREGGEDNICK
	"489": true, // ERR_SECUREONLYCHAN
}

// dialIRC connects to addr, registers as nick (or nick_, nick__ … if taken), joins channel and
// waits for the end of its NAMES list; ctx bounds all of it. onText is then called with the text
// of every PRIVMSG and NOTICE the user receives.
func dialIRC(ctx context.Context, addr, nick, channel string, onText func(text string)) (*ircUser, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("IRC %s: %w", nick, err)
	}
	// A cancelled ctx must also abort a read blocked during registration.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	u := &ircUser{nick: nick, channel: channel, conn: conn, onText: onText, done: make(chan struct{})}
	u.sc = bufio.NewScanner(conn)
	u.sc.Buffer(make([]byte, 4096), irc.MaxLine+2)
	if err := u.register(ctx); err != nil {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("IRC %s at %s: %w", nick, addr, err)
	}
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("IRC %s: %w", nick, ctx.Err())
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("IRC %s: %w", nick, err)
	}
	go u.read()
	return u, nil
}

// register runs NICK/USER until 001, then JOIN until 366 for the channel.
func (u *ircUser) register(ctx context.Context) error {
	base := u.nick
	if err := u.send("NICK " + u.nick); err != nil {
		return err
	}
	if err := u.send("USER " + base + " 0 * :aldis bench"); err != nil {
		return err
	}
	registered := false
	tries := 1
	for {
		m, err := u.next()
		if err != nil {
			if registered {
				return fmt.Errorf("joining %s: %w", u.channel, err)
			}
			return fmt.Errorf("registering: %w", err)
		}
		switch cmd := m.Command; {
		case cmd == "PING":
			if err := u.send("PONG :" + irc.Param(&m, 0)); err != nil {
				return err
			}
		case cmd == "ERROR":
			return fmt.Errorf("server closed the connection: %s", irc.Param(&m, 0))
		case cmd == "001":
			registered = true
			u.nick = irc.Param(&m, 0)
			if err := u.send("JOIN " + u.channel); err != nil {
				return err
			}
		case !registered && (cmd == "432" || cmd == "433" || cmd == "436"):
			if tries >= nickTries {
				return fmt.Errorf("nick %s refused (%s %s)", u.nick, cmd, lastParam(&m))
			}
			tries++
			u.nick += "_"
			if err := u.send("NICK " + u.nick); err != nil {
				return err
			}
		case cmd == "464" || cmd == "465":
			return fmt.Errorf("registration refused: %s %s", cmd, lastParam(&m))
		case registered && joinErrors[cmd] && irc.RFC1459.Equal(irc.Param(&m, 1), u.channel):
			return fmt.Errorf("JOIN %s refused: %s %s", u.channel, cmd, lastParam(&m))
		case registered && cmd == "366" && irc.RFC1459.Equal(irc.Param(&m, 1), u.channel):
			return ctx.Err()
		}
	}
}

// next reads and parses one line, skipping lines that do not parse.
func (u *ircUser) next() (irc.Message, error) {
	for u.sc.Scan() {
		m, err := irc.ParseLine(u.sc.Text())
		if err == nil {
			return m, nil
		}
	}
	if err := u.sc.Err(); err != nil {
		return irc.Message{}, err
	}
	return irc.Message{}, errors.New("connection closed by the server")
}

// read is the reader goroutine once the user has joined.
func (u *ircUser) read() {
	defer close(u.done)
	for {
		m, err := u.next()
		if err != nil {
			u.err = err
			return
		}
		u.lines.Add(1)
		switch m.Command {
		case "PRIVMSG", "NOTICE":
			if u.onText != nil && len(m.Params) >= 2 {
				u.onText(m.Params[1])
			}
		case "PING":
			if err := u.send("PONG :" + irc.Param(&m, 0)); err != nil {
				u.err = err
				return
			}
		}
	}
}

// say sends text to the channel.
func (u *ircUser) say(text string) error {
	return u.send("PRIVMSG " + u.channel + " :" + text)
}

func (u *ircUser) send(line string) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	u.conn.SetWriteDeadline(time.Now().Add(ircWriteTimeout))
	if _, err := u.conn.Write([]byte(line + "\r\n")); err != nil {
		return fmt.Errorf("IRC %s: write: %w", u.nick, err)
	}
	return nil
}

// alive reports whether the reader still runs, or else why it stopped.
func (u *ircUser) alive() error {
	select {
	case <-u.done:
		if u.err == nil {
			return fmt.Errorf("IRC %s: connection closed", u.nick)
		}
		return fmt.Errorf("IRC %s: %w", u.nick, u.err)
	default:
		return nil
	}
}

// close says QUIT and closes the connection without waiting for the server.
func (u *ircUser) close() {
	u.wmu.Lock()
	u.conn.SetWriteDeadline(time.Now().Add(time.Second))
	u.conn.Write([]byte("QUIT :bench done\r\n"))
	u.wmu.Unlock()
	u.conn.Close()
	<-u.done
}

func lastParam(m *irc.Message) string {
	if len(m.Params) == 0 {
		return ""
	}
	return strings.TrimSpace(m.Params[len(m.Params)-1])
}
