package irc

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// MaxNickTries is how many alternatives AltNick offers before the caller gives up.
const MaxNickTries = 20

// NickFromMUC derives an IRC nick from a MUC nick, identical where IRC allows (PROTOCOLS §7.4):
// NFKC-normalise and transliterate to ASCII where possible (é → e); replace each run of other
// characters with "_"; prefix "_" to a leading digit or "-"; truncate to nickLen. A result with
// nothing but "_" left carries no trace of the name, so it becomes "xmpp" plus 4 hex digits of a
// hash of bareJID instead, which is stable for the user.
func NickFromMUC(mucNick string, nickLen int, bareJID string) string {
	if nickLen <= 0 {
		nickLen = 9
	}
	var b strings.Builder
	invalid := false
	for _, r := range norm.NFKD.String(norm.NFKC.String(mucNick)) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue // a combining mark left by decomposing an accented letter
		case nickChar(r):
			if invalid {
				b.WriteByte('_')
				invalid = false
			}
			b.WriteRune(r)
		default:
			invalid = true
		}
		if b.Len() > nickLen+1 {
			break
		}
	}
	if invalid {
		b.WriteByte('_')
	}
	nick := b.String()
	if nick != "" && (isDigit(nick[0]) || nick[0] == '-') {
		nick = "_" + nick
	}
	nick = nick[:min(len(nick), nickLen)]
	if strings.Trim(nick, "_") == "" {
		nick = ("xmpp" + hashHex(bareJID, 2))[:min(8, nickLen)]
	}
	return nick
}

// FallbackNick is the nick to use when the server refused a derived one as erroneous (432): "x"
// and 8 hex digits of a hash of bareJID, which any server accepts.
func FallbackNick(bareJID string, nickLen int) string {
	return ("x" + hashHex(bareJID, 4))[:min(9, max(nickLen, 2))]
}

// AltNick returns the try'th alternative (from 1) to nick after the server said it is in use
// (433, 436, 437): "_" appended, then the last character replaced by 1 to 9, then the last two by
// hex digits, always within nickLen. ok is false after MaxNickTries: give up.
func AltNick(nick string, try, nickLen int) (alt string, ok bool) {
	if nickLen <= 1 {
		nickLen = 9
	}
	if try < 1 || try > MaxNickTries {
		return "", false
	}
	nick = truncate(nick, nickLen)
	switch {
	case try == 1:
		return truncate(nick, nickLen-1) + "_", true
	case try <= 10:
		return truncate(nick, nickLen-1) + string(rune('0'+try-1)), true
	default:
		return truncate(nick, nickLen-2) + hashHex(nick+string(rune(try)), 1), true
	}
}

// nickChar reports whether r may appear in an RFC 2812 nick: letters, digits and []\`_^{|}-.
func nickChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("[]\\`_^{|}-", r)
}

func hashHex(s string, bytes int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:bytes])
}
