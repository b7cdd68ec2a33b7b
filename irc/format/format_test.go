package format

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircfmt"
)

func TestFromIRC(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"\x02bold\x02 and \x1ditalic\x1d", "*bold* and _italic_"},
		{"\x1estruck\x1e \x11mono\x11", "~struck~ `mono`"},
		{"\x02\x1dboth\x0f after", "*_both_* after"},
		// Spans don't start or end with spaces: the spaces move outside.
		{"\x02 spaced \x02end", " *spaced* end"},
		// Colours and underline have no XEP-0393 form: dropped, and a bold run around them is kept whole.
		{"\x02b\x0304,12red\x03c\x02", "*bredc*"},
		{"\x1funder\x1f \x16rev\x16", "under rev"},
		// Only whitespace in a span: nothing to style.
		{"\x02   \x02x", "   x"},
		// Control characters XML can't carry are removed; so is invalid UTF-8.
		{"a\x01b\x07c\x00d", "abcd"},
		{"caf\xe9", "caf\uFFFD"},
		{"line\r\nnext", "line\nnext"},
		{"\uFFFE\uFFFF ok", " ok"},
	} {
		if got := FromIRC(tc.in); got != tc.want {
			t.Errorf("FromIRC(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestToIRC(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"*bold* and _em_ ~st~ `c`", "\x02bold\x02 and \x1dem\x1d \x1est\x1e \x11c\x11"},
		{"*_both_*", "\x02\x1dboth\x1d\x02"},
		// Not styling by XEP-0393's rules: left as written.
		{"a*b*c", "a*b*c"},
		{"* not bold *", "* not bold *"},
		{"2 * 3 * 4", "2 * 3 * 4"},
		// Preformatted blocks lose their fences and become monospace lines.
		{"```\ncode\n\nmore\n```\nafter", "\x11code\x11\n\n\x11more\x11\nafter"},
		{"> quoted *b*", "> quoted \x02b\x02"},
		// IRC codes typed into XMPP are not passed on; neither is CTCP's marker.
		{"x\x02y\x01z", "xyz"},
	} {
		if got := ToIRC(tc.in); got != tc.want {
			t.Errorf("ToIRC(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRoundTrip: styling written on one side reads the same after going to the other and back.
func TestRoundTrip(t *testing.T) {
	for _, s := range []string{
		"*bold* plain _emph_ ~strike~ `pre`",
		"hello *world*",
		"*_nested_*",
		"multi\n*line* text",
	} {
		if got := FromIRC(ToIRC(s)); got != s {
			t.Errorf("FromIRC(ToIRC(%q)) = %q", s, got)
		}
	}
	for _, s := range []string{"\x02bold\x02 x \x1dit\x1d", "\x11mono\x11"} {
		if got := ToIRC(FromIRC(s)); got != s {
			t.Errorf("ToIRC(FromIRC(%q)) = %q", s, got)
		}
	}
}

func TestLargeInputOnlyCleaned(t *testing.T) {
	big := strings.Repeat("\x02b\x02 ", MaxInput/4+1)
	if got := FromIRC(big); strings.ContainsAny(got, "\x02*") {
		t.Fatalf("oversized input was styled or kept codes")
	}
}

func FuzzFromIRC(f *testing.F) {
	for _, s := range []string{"", "\x02b\x02", "\x0304,05x\x03", "\x1d\x1e\x11\x16\x1f\x0f", "a\x00b", "caf\xe9", "\x02 \n x\x02"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4*MaxInput {
			return
		}
		out := FromIRC(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 from %q", s)
		}
		for _, r := range out {
			if !xmlChar(r) {
				t.Fatalf("FromIRC(%q) = %q holds %U, which XML can't carry", s, out, r)
			}
		}
		if ircfmt.Strip(out) != out {
			t.Fatalf("FromIRC(%q) = %q keeps IRC codes", s, out)
		}
		// Styling only adds directives around runs; it never grows text without bound.
		if len(out) > 5*len(s)+8 {
			t.Fatalf("FromIRC grew %d bytes to %d", len(s), len(out))
		}
	})
}

func FuzzToIRC(f *testing.F) {
	for _, s := range []string{"", "*b*", "_e_ ~s~ `p`", "```\nx\n```", "> q\n>> qq *x*", "a*b", "\x01ACTION x\x01", "``` lang\n*x*\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4*MaxInput || !utf8.ValidString(s) {
			return // XMPP bodies are UTF-8
		}
		out := ToIRC(s)
		if strings.ContainsAny(out, "\x00\x01") {
			t.Fatalf("ToIRC(%q) = %q holds NUL or CTCP's marker", s, out)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("ToIRC(%q) is invalid UTF-8", s)
		}
		if len(out) > 2*len(s)+8 {
			t.Fatalf("ToIRC grew %d bytes to %d", len(s), len(out))
		}
	})
}
