package irc

import (
	"strings"
	"unicode/utf8"
)

// assumedPrefix is the room left for the ":nick!user@host " the server puts in front of our lines
// when it relays them: we can't know our host as others see it (cloaks, IPv6), so assume a long one.
const assumedPrefix = 100

// TextBudget returns how many bytes of text fit in one PRIVMSG (or NOTICE) from nick to target on
// a server whose lines are lineLen bytes long, once the server has added our prefix; action
// reserves room for CTCP ACTION's framing.
func TextBudget(lineLen int, nick, target string, action bool) int {
	if lineLen <= 0 {
		lineLen = DefaultLineLen
	}
	prefix := max(assumedPrefix, 1+len(nick)+1+10+1+63+1) // ":" nick "!" user "@" host " "
	n := lineLen - 2 - prefix - len("PRIVMSG ") - len(target) - len(" :")
	if action {
		n -= len("\x01ACTION \x01")
	}
	return max(n, 16) // a target so long that nothing fits is the server's problem; send something
}

// SplitText breaks text into IRC message lines: one per line of text (CR LF, LF or CR ends a
// line; empty lines are dropped, IRC can't send them), and lines longer than budget bytes are cut
// at a UTF-8 boundary, at the last space of the cut when one is near its end so words stay whole.
func SplitText(text string, budget int) []string {
	if budget < utf8.UTFMax {
		budget = utf8.UTFMax
	}
	var out []string
	for len(text) > 0 {
		i := strings.IndexAny(text, "\r\n")
		line := text
		if i >= 0 {
			// CR LF leaves an empty line between CR and LF, which is dropped below.
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		for len(line) > budget {
			cut := cutPoint(line, budget)
			out = append(out, line[:cut])
			line = strings.TrimLeft(line[cut:], " ")
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// cutPoint returns where to cut s (longer than budget) so that s[:cut] fits: at a space in the
// last quarter of the budget, else at the last UTF-8 boundary that fits.
func cutPoint(s string, budget int) int {
	cut := budget
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut == 0 { // can't happen with budget >= UTFMax on valid or invalid UTF-8; be safe anyway
		return budget
	}
	if sp := strings.LastIndexByte(s[:cut], ' '); sp >= cut-cut/4 && sp > 0 {
		return sp
	}
	return cut
}
