package irc

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircmsg"
)

// Message is one IRC protocol message: tags, source, command and parameters.
type Message = ircmsg.Message

// Line limits. The body (everything after the tags) is at most 512 bytes with its CRLF (RFC 1459);
// tags may add up to 8191 bytes (IRCv3 message-tags). Servers that advertise a longer LINELEN
// raise the body limit, up to MaxBody.
const (
	DefaultLineLen = 512
	MaxBody        = 4096
	MaxLine        = ircmsg.MaxlenTags + MaxBody
	maxParams      = 15 + 1 // RFC 1459's 15, and one more for servers that are generous
)

// ErrBadLine is wrapped by every ParseLine error.
var ErrBadLine = errors.New("irc: bad line")

// ParseLine parses one line read from a server (without or with its CRLF). It never panics and
// bounds what it accepts: lines longer than MaxLine, more than 16 parameters, or a command that is
// neither letters nor a three-digit numeric are refused. Text that is not valid UTF-8 (legacy
// clients in Latin-1) has its invalid bytes replaced, so what the bridge passes on is always UTF-8.
func ParseLine(line string) (Message, error) {
	if len(line) > MaxLine {
		return Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadLine, len(line), MaxLine)
	}
	m, err := ircmsg.ParseLineStrict(line, false, 0)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadLine, err)
	}
	if !validCommand(m.Command) {
		return Message{}, fmt.Errorf("%w: command %q", ErrBadLine, truncate(m.Command, 32))
	}
	if len(m.Params) > maxParams {
		return Message{}, fmt.Errorf("%w: %d parameters", ErrBadLine, len(m.Params))
	}
	if !utf8.ValidString(m.Source) {
		m.Source = strings.ToValidUTF8(m.Source, "\uFFFD")
	}
	for i, p := range m.Params {
		if !utf8.ValidString(p) {
			m.Params[i] = strings.ToValidUTF8(p, "\uFFFD")
		}
	}
	return m, nil
}

func validCommand(c string) bool {
	if len(c) == 0 || len(c) > 32 {
		return false
	}
	if len(c) == 3 && isDigit(c[0]) && isDigit(c[1]) && isDigit(c[2]) {
		return true
	}
	for i := range len(c) {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// truncate shortens s to at most n bytes at a UTF-8 boundary, for log messages.
func truncate(s string, n int) string {
	return ircmsg.TruncateUTF8Safe(s, n)
}

// Param returns parameter i of m, or "" when there is none.
func Param(m *Message, i int) string {
	if i < len(m.Params) {
		return m.Params[i]
	}
	return ""
}

// LastParam returns m's last parameter (the trailing text of most commands), or "" when there is
// none.
func LastParam(m *Message) string {
	if len(m.Params) == 0 {
		return ""
	}
	return m.Params[len(m.Params)-1]
}

// Serialize renders m as a line with CRLF for a client to send: it refuses a message whose
// parameters cannot be written (an empty or spaced middle parameter, or a CR, LF or NUL anywhere),
// and a body longer than lineLen, rather than letting the server see a different command.
func Serialize(m *Message, lineLen int) ([]byte, error) {
	if lineLen <= 0 {
		lineLen = DefaultLineLen
	}
	for _, p := range m.Params {
		if strings.ContainsAny(p, "\x00\r\n") {
			return nil, fmt.Errorf("irc: %s: parameter contains CR, LF or NUL", m.Command)
		}
	}
	b, err := m.LineBytesStrict(true, lineLen)
	if err != nil {
		return nil, fmt.Errorf("irc: serialising %s: %w", m.Command, err)
	}
	return b, nil
}
