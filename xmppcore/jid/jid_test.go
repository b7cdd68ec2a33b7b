package jid

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// RFC 7622 §3.5 examples plus normalisation cases of our own.
var validTests = []struct {
	in, want              string
	local, domain, resour string
}{
	// RFC 7622 §3.5.1 (valid).
	{"juliet@example.com", "", "juliet", "example.com", ""},
	{"juliet@example.com/foo", "", "juliet", "example.com", "foo"},
	{"juliet@example.com/foo bar", "", "juliet", "example.com", "foo bar"},
	{"juliet@example.com/foo@bar", "", "juliet", "example.com", "foo@bar"},
	{`foo\20bar@example.com`, "", `foo\20bar`, "example.com", ""},
	{"fussball@example.com", "", "fussball", "example.com", ""},
	{"fußball@example.com", "", "fußball", "example.com", ""},
	{"π@example.com", "", "π", "example.com", ""},
	{"Σ@example.com/foo", "σ@example.com/foo", "σ", "example.com", "foo"},
	{"σ@example.com/foo", "", "σ", "example.com", "foo"},
	{"ς@example.com/foo", "", "ς", "example.com", "foo"},
	{"king@example.com/♚", "", "king", "example.com", "♚"},
	{"example.com", "", "", "example.com", ""},
	{"example.com/foobar", "", "", "example.com", "foobar"},
	{"a.example.com/b@example.net", "", "", "a.example.com", "b@example.net"},

	// Case mapping, width mapping, trailing dot, IDNA.
	{"Juliet@Example.COM/Balcony", "juliet@example.com/Balcony", "juliet", "example.com", "Balcony"},
	{"ＪＵＬＩＥＴ@example.com", "juliet@example.com", "juliet", "example.com", ""},
	{"juliet@example.com.", "juliet@example.com", "juliet", "example.com", ""},
	{"juliet@example.com./r", "juliet@example.com/r", "juliet", "example.com", "r"},
	{"juliet@xn--bcher-kva.example", "juliet@bücher.example", "juliet", "bücher.example", ""},
	{"juliet@BÜCHER.example", "juliet@bücher.example", "juliet", "bücher.example", ""},
	{"juliet@example.com/a/b/c", "", "juliet", "example.com", "a/b/c"},
	{"juliet@example.com/ lead", "", "juliet", "example.com", " lead"},
	{"juliet@example.com/\u00a0nbsp", "juliet@example.com/ nbsp", "juliet", "example.com", " nbsp"},
	{"a-b.c-d.example", "", "", "a-b.c-d.example", ""},
	{"localhost", "", "", "localhost", ""},

	// IP literals.
	{"juliet@192.0.2.1/r", "", "juliet", "192.0.2.1", "r"},
	{"juliet@[2001:db8::1]", "", "juliet", "[2001:db8::1]", ""},
	{"[2001:DB8:0:0:0:0:0:1]/r", "[2001:db8::1]/r", "", "[2001:db8::1]", "r"},
	{"[::ffff:192.0.2.1]", "", "", "[::ffff:192.0.2.1]", ""},
}

var invalidTests = []string{
	// RFC 7622 §3.5.2 (invalid).
	`"juliet"@example.com`,
	"foo bar@example.com",
	"juliet@example.com/",
	"@example.com/",
	"henryⅣ@example.com",
	"♚@example.com",
	"juliet@",
	"/foobar",

	// Empty parts with separators, empty input.
	"",
	"@d",
	"l@",
	"d/",
	"@",
	"/",
	"@/",
	"l@/r",
	".",
	"l@.",

	// Forbidden localpart characters, also after width mapping.
	"a&b@example.com",
	"a'b@example.com",
	"a:b@example.com",
	"a<b@example.com",
	"a>b@example.com",
	"a＠b@example.com",
	"a／b@example.com",

	// Bad domains.
	"juliet@exa mple.com",
	"juliet@exa_mple.com",
	"juliet@-example.com",
	"juliet@example-.com",
	"juliet@ab--cd.example",
	"juliet@xn--zz.example",
	"juliet@example..com",
	"juliet@.example.com",
	"juliet@example.com..",
	"juliet@a\u3002\u3002b",
	"juliet@[1.2.3.4]",
	"juliet@[fe80::1%eth0]",
	"juliet@[::1",
	"juliet@[]",
	"juliet@[nope]",

	// Controls and invalid UTF-8.
	"jul\x00iet@example.com",
	"juliet@example.com/r\x00",
	"juliet@example.com/r\n",
	"jul\xffiet@example.com",
	"juliet@exa\xffmple.com",
	"juliet@example.com/\xff",

	// Length limits.
	strings.Repeat("a", 1024) + "@example.com",
	"a@" + strings.Repeat("b", 1024),
	"a@example.com/" + strings.Repeat("c", 1024),
	strings.Repeat("Ａ", 2000) + "@example.com",
}

func TestParseValid(t *testing.T) {
	for _, tt := range validTests {
		j, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): unexpected error %v", tt.in, err)
			continue
		}
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if j.String() != want || j.Local() != tt.local || j.Domain() != tt.domain || j.Resource() != tt.resour {
			t.Errorf("Parse(%q) = %q (%q, %q, %q), want %q (%q, %q, %q)", tt.in,
				j, j.Local(), j.Domain(), j.Resource(), want, tt.local, tt.domain, tt.resour)
		}
		if j.IsBare() != (tt.resour == "") || j.IsZero() {
			t.Errorf("Parse(%q): IsBare=%v IsZero=%v", tt.in, j.IsBare(), j.IsZero())
		}
		checkIdempotent(t, j)

		// New from the parts gives the same value.
		n, err := New(tt.local, tt.domain, tt.resour)
		if err != nil || n != j {
			t.Errorf("New(%q, %q, %q) = %q, %v; want %q", tt.local, tt.domain, tt.resour, n, err, j)
		}
	}
}

func TestParseLengthBoundaries(t *testing.T) {
	for _, s := range []string{
		strings.Repeat("a", 1023) + "@" + strings.Repeat("b", 1023) + "/" + strings.Repeat("c", 1023),
		strings.Repeat("Ａ", 1023) + "@example.com", // 3 bytes each before width mapping
	} {
		j, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(len %d): %v", len(s), err)
		}
		checkIdempotent(t, j)
	}
}

func TestParseInvalid(t *testing.T) {
	for _, in := range invalidTests {
		if j, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %q, want error", in, j)
		} else if !strings.HasPrefix(err.Error(), "jid: ") {
			t.Errorf("Parse(%q): error %q lacks context", in, err)
		}
	}
}

func TestNewInvalid(t *testing.T) {
	for _, p := range [][3]string{
		{"a", "", ""},
		{"a@b", "example.com", ""},
		{"", "example.com/x", ""},
		{"", "a@example.com", ""},
		{"", "example.com", "\x00"},
		{"", ".", ""},
	} {
		if j, err := New(p[0], p[1], p[2]); err == nil {
			t.Errorf("New(%q) = %q, want error", p, j)
		}
	}
}

func TestMethods(t *testing.T) {
	j := MustParse("Romeo@Example.net/Orchard")
	b := j.Bare()
	if b.String() != "romeo@example.net" || !b.IsBare() || b.Resource() != "" || b.Local() != "romeo" {
		t.Fatalf("Bare() = %q", b)
	}
	if b != MustParse("romeo@example.net") {
		t.Fatal("Bare() differs from a parsed bare JID")
	}
	w, err := j.WithResource("ＰＨＯＮＥ\u00a0x")
	if err != nil || w.String() != "romeo@example.net/ＰＨＯＮＥ x" || w != MustParse(w.String()) {
		t.Fatalf("WithResource = %q, %v", w, err)
	}
	if w, err := j.WithResource(""); err != nil || w != b {
		t.Fatalf("WithResource(\"\") = %q, %v", w, err)
	}
	if _, err := j.WithResource("\x01"); err == nil {
		t.Fatal("WithResource accepted a control character")
	}
	if _, err := (JID{}).WithResource("r"); err == nil {
		t.Fatal("WithResource on the zero JID succeeded")
	}

	var z JID
	if !z.IsZero() || z.String() != "" || z.Local() != "" || z.Domain() != "" || z.Resource() != "" || !z.IsBare() || !z.Bare().IsZero() {
		t.Fatal("zero JID misbehaves")
	}

	// Usable as a map key: equal addresses built differently collide.
	m := map[JID]int{MustParse("juliet@example.com"): 1}
	if m[MustParse("JULIET@example.com.")] != 1 {
		t.Fatal("normalised JIDs are not equal map keys")
	}
	d := MustParse("example.com/r")
	if d.Local() != "" || d.Domain() != "example.com" || d.Resource() != "r" {
		t.Fatalf("domain JID parts: %q %q %q", d.Local(), d.Domain(), d.Resource())
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse did not panic")
		}
	}()
	MustParse("@")
}

// TestFastPathTable proves the fast-path byte classes: every byte they accept is left
// unchanged by the profile the slow path would apply.
func TestFastPathTable(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := "a" + string(rune(c)) + "b"
		if c >= 0x80 {
			s = "a" + string([]byte{byte(c)}) + "b"
		}
		if isFastLocal(s) {
			if out, err := precis.UsernameCaseMapped.String(s); err != nil || out != s || strings.ContainsAny(s, forbiddenLocal) {
				t.Errorf("fast localpart byte %#x not stable: %q %v", c, out, err)
			}
		}
		if isFastResource(s) {
			if out, err := precis.OpaqueString.String(s); err != nil || out != s {
				t.Errorf("fast resourcepart byte %#x not stable: %q %v", c, out, err)
			}
		}
		if isFastDomain(s) {
			if out, err := normDomainSlow(s); err != nil || out != s {
				t.Errorf("fast domainpart byte %#x not stable: %q %v", c, out, err)
			}
		}
	}
	for _, d := range []string{"a", "a.b", "a-b.c", "1.2.3.4", "0", "a.b.c.d.e", "ab-c", "a--b"} {
		if !isFastDomain(d) {
			t.Errorf("isFastDomain(%q) = false", d)
		}
		if out, err := normDomainSlow(d); err != nil || out != d {
			t.Errorf("slow domain(%q) = %q, %v", d, out, err)
		}
	}
	for _, d := range []string{"", ".", "a.", ".a", "a..b", "-a", "a-", "xn--a", "ab--c", "A", "a_b"} {
		if isFastDomain(d) {
			t.Errorf("isFastDomain(%q) = true", d)
		}
	}
}

// normDomainSlow runs the domain normalisation without the fast path.
func normDomainSlow(s string) (string, error) {
	return normDomain(s + ".") // a trailing dot always defeats the fast path
}

func TestParseAllocs(t *testing.T) {
	for _, s := range []string{"alice@example.com/phone", "example.com", "alice@example.com", "alice@192.0.2.1/x y"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = Parse(s) }); n > 0 {
			t.Errorf("Parse(%q): %v allocations, want 0", s, n)
		}
	}
	j := MustParse("alice@example.com/phone")
	if n := testing.AllocsPerRun(100, func() { _ = j.String(); _ = j.Bare(); _ = j.Local(); _ = j.Domain(); _ = j.Resource() }); n > 0 {
		t.Errorf("accessors: %v allocations, want 0", n)
	}
}

func checkIdempotent(t *testing.T, j JID) {
	t.Helper()
	k, err := Parse(j.String())
	if err != nil || k != j {
		t.Errorf("Parse(%q) = %q, %v; not idempotent", j, k, err)
	}
	// The slow path must agree with the fast path on canonical input.
	l, err := build(j.Local(), j.Domain(), j.Resource())
	if err != nil || l != j {
		t.Errorf("build(%q) = %q, %v; fast and slow paths disagree", j, l, err)
	}
}

func TestEscape(t *testing.T) {
	// XEP-0106 §5 examples (with the localpart only).
	for _, tt := range []struct{ raw, esc string }{
		{"space cadet", `space\20cadet`},
		{`call me "ishmael"`, `call\20me\20\22ishmael\22`},
		{"at&t guy", `at\26t\20guy`},
		{"d'artagnan", `d\27artagnan`},
		{"/.fanboy", `\2f.fanboy`},
		{"::foo::", `\3a\3afoo\3a\3a`},
		{"<foo>", `\3cfoo\3e`},
		{"user@host", `user\40host`},
		{`c:\net`, `c\3a\net`},
		{`c:\\net`, `c\3a\\net`},
		{`c:\cool stuff`, `c\3a\cool\20stuff`},
		{`c:\5commas`, `c\3a\5c5commas`},
		{"plain", "plain"},
		{"", ""},
		{`\`, `\`},
		{`\5c`, `\5c5c`},
		{`\\20`, `\\5c20`},
	} {
		if got := Escape(tt.raw); got != tt.esc {
			t.Errorf("Escape(%q) = %q, want %q", tt.raw, got, tt.esc)
		}
		if got := Unescape(tt.esc); got != tt.raw {
			t.Errorf("Unescape(%q) = %q, want %q", tt.esc, got, tt.raw)
		}
	}
	if got := Escape("  padded  "); got != "padded" {
		t.Errorf("Escape trims spaces: got %q", got)
	}
	if got := Unescape(`\2F\zz\2`); got != `\2F\zz\2` {
		t.Errorf("Unescape decoded a non-sequence: %q", got)
	}
	// An escaped localpart is a valid localpart.
	if _, err := Parse(Escape(`d'artagnan@"home" <x>`) + "@example.com"); err != nil {
		t.Errorf("escaped localpart rejected: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range validTests {
		f.Add(tt.in)
	}
	for _, in := range invalidTests {
		if len(in) < 200 {
			f.Add(in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Parse(s)
		if err != nil {
			if !j.IsZero() {
				t.Fatalf("Parse(%q) returned %q with error", s, j)
			}
			return
		}
		if j.IsZero() || j.Domain() == "" || !utf8.ValidString(j.String()) {
			t.Fatalf("Parse(%q) = %q: invalid result", s, j)
		}
		checkIdempotent(t, j)
		if j.Bare() != MustParse(j.Bare().String()) {
			t.Fatalf("Bare of %q not canonical", j)
		}
	})
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"space cadet", `c:\5commas`, `\\20`, `\`, "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.Trim(s, " ")
		if got := Unescape(Escape(s)); got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, got)
		}
		// Escaped output never contains a character the localpart forbids.
		if e := Escape(s); strings.ContainsAny(e, forbiddenLocal+" ") {
			t.Fatalf("Escape(%q) = %q still has forbidden characters", s, e)
		}
	})
}

var sink JID

func BenchmarkParse(b *testing.B) {
	for _, bb := range []struct{ name, in string }{
		{"fast/full", "alice@example.com/phone"},
		{"fast/bare", "alice@example.com"},
		{"slow/case", "Alice@Example.com/phone"},
		{"slow/unicode", "jüliet@bücher.example/♚"},
		{"slow/idna", "juliet@xn--bcher-kva.example"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				j, err := Parse(bb.in)
				if err != nil {
					b.Fatal(err)
				}
				sink = j
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		j, err := New("alice", "example.com", "phone")
		if err != nil {
			b.Fatal(err)
		}
		sink = j
	}
}

func BenchmarkBareString(b *testing.B) {
	j := MustParse("alice@example.com/phone")
	b.ReportAllocs()
	for b.Loop() {
		sink = j.Bare()
		_ = sink.String()
	}
}
