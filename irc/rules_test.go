package irc

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCaseMapping(t *testing.T) {
	for _, tc := range []struct {
		cm   CaseMapping
		a, b string
		eq   bool
	}{
		{RFC1459, "Nick[]\\~", "nick{}|^", true},
		{StrictRFC1459, "Nick[]\\", "nick{}|", true},
		{StrictRFC1459, "a~", "a^", false},
		{ASCII, "NICK", "nick", true},
		{ASCII, "a[", "a{", false},
		{RFC1459, "#Chan", "#chan", true},
		{RFC1459, "Émile", "émile", false}, // rfc1459 folds ASCII only
		{RFC7613, "Émile", "émile", true},
		{RFC1459, "ab", "abc", false},
	} {
		if got := tc.cm.Equal(tc.a, tc.b); got != tc.eq {
			t.Errorf("%s.Equal(%q, %q) = %v", tc.cm, tc.a, tc.b, got)
		}
	}
	if ParseCaseMapping("ASCII") != ASCII || ParseCaseMapping("rfc1459-strict") != StrictRFC1459 || ParseCaseMapping("weird") != RFC1459 {
		t.Error("ParseCaseMapping")
	}
}

func TestISupport(t *testing.T) {
	is := DefaultISupport()
	is.Apply([]string{"CASEMAPPING=strict-rfc1459", "NICKLEN=30", "PREFIX=(ohv)@%+", "CHANTYPES=#&", "LINELEN=1024", "EXCEPTS", "KEY=a\\x3Db"})
	if is.CaseMapping != StrictRFC1459 || is.NickLen != 30 || is.PrefixModes != "ohv" || is.LineLen != 1024 {
		t.Fatalf("%+v", is)
	}
	if v, ok := is.Tokens["EXCEPTS"]; !ok || v != "" {
		t.Error("valueless token")
	}
	if is.Tokens["KEY"] != "a=b" {
		t.Errorf("escape: %q", is.Tokens["KEY"])
	}
	pre, nick := is.SplitPrefixes("@%+bob")
	if pre != "@%+" || nick != "bob" || is.ModeForPrefix('%') != 'h' {
		t.Errorf("prefixes %q %q", pre, nick)
	}
	if !is.IsChannel("#x") || !is.IsChannel("&x") || is.IsChannel("bob") || is.IsChannel("") {
		t.Error("IsChannel")
	}
	// Nonsense keeps the old value; withdrawal restores the default.
	is.Apply([]string{"NICKLEN=abc", "PREFIX=(ov)@", "LINELEN=10"})
	if is.NickLen != 30 || is.PrefixModes != "ohv" || is.LineLen != 1024 {
		t.Fatalf("bad values applied: %+v", is)
	}
	is.Apply([]string{"-NICKLEN", "-PREFIX"})
	if is.NickLen != 9 || is.PrefixChars != "@+" {
		t.Fatalf("withdrawal: %+v", is)
	}
}

func TestNickFromMUC(t *testing.T) {
	for _, tc := range []struct {
		muc  string
		len  int
		want string
	}{
		{"Juliet Capulet", 9, "Juliet_Ca"},
		{"juliet", 9, "juliet"},
		{"Émile Zola", 30, "Emile_Zola"},
		{"ﬁsh", 9, "fish"}, // NFKC ligature
		{"3rd witch", 9, "_3rd_witc"},
		{"-dash", 9, "_-dash"},
		{"a  b!!c", 9, "a_b_c"},
		{"[bot]", 9, "[bot]"},
		{"Ω", 9, ""}, // nothing left: hashed
		{"", 9, ""},
	} {
		got := NickFromMUC(tc.muc, tc.len, "user@example.com")
		if tc.want == "" {
			if !strings.HasPrefix(got, "xmpp") || len(got) != 8 {
				t.Errorf("NickFromMUC(%q) = %q, want xmpp + 4 hex digits", tc.muc, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("NickFromMUC(%q, %d) = %q, want %q", tc.muc, tc.len, got, tc.want)
		}
	}
	if a, b := NickFromMUC("Ω", 9, "a@x"), NickFromMUC("Ω", 9, "b@x"); a == b {
		t.Error("hashed nicks don't depend on the JID")
	}
	if f := FallbackNick("a@x", 9); len(f) != 9 || f[0] != 'x' {
		t.Errorf("FallbackNick = %q", f)
	}
}

func TestAltNick(t *testing.T) {
	seen := map[string]bool{"Juliet_Ca": true}
	want := []string{"Juliet_C_", "Juliet_C1", "Juliet_C2"}
	for try := 1; try <= MaxNickTries; try++ {
		alt, ok := AltNick("Juliet_Ca", try, 9)
		if !ok || len(alt) > 9 {
			t.Fatalf("try %d: %q %v", try, alt, ok)
		}
		if try <= len(want) && alt != want[try-1] {
			t.Errorf("try %d: %q, want %q", try, alt, want[try-1])
		}
		if seen[alt] {
			t.Errorf("try %d repeats %q", try, alt)
		}
		seen[alt] = true
	}
	if _, ok := AltNick("x", MaxNickTries+1, 9); ok {
		t.Error("no give-up after MaxNickTries")
	}
	if alt, _ := AltNick("bob", 1, 9); alt != "bob_" {
		t.Errorf("short nick: %q", alt)
	}
}

func TestSplitText(t *testing.T) {
	if got := SplitText("a\nb\r\n\nc", 100); strings.Join(got, "|") != "a|b|c" {
		t.Errorf("lines: %q", got)
	}
	words := strings.Repeat("word ", 100)
	for _, part := range SplitText(words, 64) {
		if len(part) > 64 || strings.HasPrefix(part, " ") || strings.HasSuffix(part, "wor") {
			t.Errorf("part %q", part)
		}
	}
	if b := TextBudget(512, "nick", "#chan", false); b != 512-2-100-8-5-2 {
		t.Errorf("budget %d", b)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		":nick!user@host PRIVMSG #chan :hello world",
		"@time=2024-01-01T00:00:00Z;msgid=abc :srv 001 me :Welcome",
		"PING :x", "@a=\\s\\:\\\\;b :s CMD a b c d e f g h i j k l m n o p q r",
		":s 005 me CASEMAPPING=ascii PREFIX=(ov)@+ :are supported",
		"", " ", ":", "@", "@ x", "CMD\x00", "\xff\xfe PRIVMSG",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if len(line) > 2*MaxLine {
			return
		}
		m, err := ParseLine(line)
		if err != nil {
			return
		}
		if !validCommand(m.Command) || len(m.Params) > maxParams {
			t.Fatalf("accepted %q", line)
		}
		for _, p := range m.Params {
			if !utf8.ValidString(p) {
				t.Fatalf("param not UTF-8: %q", p)
			}
		}
		// What we parsed, we can write back (as a client would) unless it can't be a client line.
		if b, err := Serialize(&m, MaxBody); err == nil {
			if _, err := ParseLine(string(b)); err != nil {
				t.Fatalf("re-parsing %q: %v", b, err)
			}
		}
	})
}

func FuzzISupport(f *testing.F) {
	f.Add("CASEMAPPING=ascii NICKLEN=30 PREFIX=(ov)@+ -NICKLEN LINELEN=2048 X=\\x20")
	f.Add("PREFIX=(ov NICKLEN=-1 CHANTYPES= \\x")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 8192 {
			return
		}
		is := DefaultISupport()
		is.Apply(strings.Fields(s))
		if is.NickLen <= 0 || is.LineLen < DefaultLineLen || is.LineLen > MaxBody || len(is.PrefixModes) != len(is.PrefixChars) || len(is.Tokens) > maxTokens {
			t.Fatalf("%q gave %+v", s, is)
		}
		is.SplitPrefixes("@+" + s)
		is.CaseMapping.Fold(s)
	})
}

func FuzzSplitText(f *testing.F) {
	f.Add("hello world", 20)
	f.Add(strings.Repeat("é😀 ", 100), 7)
	f.Add("a\r\n\r\nb\rc", 4)
	f.Fuzz(func(t *testing.T, text string, budget int) {
		if len(text) > 1<<16 || budget > 1<<12 {
			return
		}
		parts := SplitText(text, budget)
		limit := max(budget, utf8.UTFMax)
		total := 0
		for _, p := range parts {
			if p == "" || len(p) > limit || strings.ContainsAny(p, "\r\n") {
				t.Fatalf("part %q (budget %d)", p, budget)
			}
			if utf8.ValidString(text) && !utf8.ValidString(p) {
				t.Fatalf("cut broke UTF-8: %q", p)
			}
			total += len(p)
		}
		if total > len(text) {
			t.Fatal("parts longer than the text")
		}
	})
}
