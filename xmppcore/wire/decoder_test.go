package wire

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	hdr      = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
	hdrEnd   = "</stream:stream>"
	nsClient = "jabber:client"

	sampleMessage = `<message from='alice@example.com/phone-1a2b' to='bob@example.net' type='chat' id='a3f9c2d1-77e4-4b0a-9c61-2f0d8e5b1c3a' xml:lang='en'><body>Hello Bob, the status report for the northern sector is ready for review.</body><active xmlns='http://jabber.org/protocol/chatstates'/><origin-id xmlns='urn:xmpp:sid:0' id='a3f9c2d1-77e4-4b0a-9c61-2f0d8e5b1c3a'/></message>`
)

// dump renders a tree with resolved namespaces, so tests see what the
// decoder resolved and not only what it copied.
func dump(e *Element) string {
	var b strings.Builder
	var walk func(*Element)
	walk = func(e *Element) {
		fmt.Fprintf(&b, "{%s}%s", e.Space, e.Name)
		for _, a := range e.Attrs {
			fmt.Fprintf(&b, " %s=%s", a.Name, strconv.Quote(a.Value))
		}
		if len(e.Nodes) == 0 {
			return
		}
		b.WriteString("(")
		for i, n := range e.Nodes {
			if i > 0 {
				b.WriteString(",")
			}
			if n.Elem != nil {
				walk(n.Elem)
			} else {
				b.WriteString(strconv.Quote(n.Text))
			}
		}
		b.WriteString(")")
	}
	walk(e)
	return b.String()
}

// decodeAll returns every token's rendering and the error that ended the stream.
func decodeAll(r io.Reader, lim Limits) ([]string, []Token, error) {
	d := NewDecoder(r, lim)
	var out []string
	var toks []Token
	for {
		tok, err := d.Next()
		if err != nil {
			return out, toks, err
		}
		toks = append(toks, tok)
		switch tok.Kind {
		case StreamStart:
			out = append(out, "start "+tok.Elem.Name+" {"+tok.Elem.Space+"}")
		case Stanza:
			out = append(out, dump(tok.Elem))
		case StreamEnd:
			out = append(out, "end")
		}
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	s string
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.s))
	copy(p, c.s[:k])
	c.s = c.s[k:]
	return k, nil
}

// readers yields the ways a test input is fed to the decoder: whole, one
// byte at a time, and in odd-sized chunks.
func readers(s string) map[string]io.Reader {
	return map[string]io.Reader{
		"whole":   strings.NewReader(s),
		"onebyte": iotest.OneByteReader(strings.NewReader(s)),
		"chunk7":  &chunkReader{s: s, n: 7},
		"halfway": iotest.HalfReader(strings.NewReader(s)),
	}
}

func TestDecodeValid(t *testing.T) {
	const stream = "{" + nsStream + "}"
	tests := []struct {
		name string
		in   string // stanzas after hdr, or a whole stream when it starts with "<?" or "<stream"
		want []string
	}{
		{"message", `<message to='bob@example.net' type='chat'><body>Hi</body></message>`,
			[]string{`{jabber:client}message to="bob@example.net" type="chat"({jabber:client}body("Hi"))`}},
		{"sample", sampleMessage, []string{
			`{jabber:client}message from="alice@example.com/phone-1a2b" to="bob@example.net" type="chat" id="a3f9c2d1-77e4-4b0a-9c61-2f0d8e5b1c3a" xml:lang="en"(` +
				`{jabber:client}body("Hello Bob, the status report for the northern sector is ready for review."),` +
				`{http://jabber.org/protocol/chatstates}active xmlns="http://jabber.org/protocol/chatstates",` +
				`{urn:xmpp:sid:0}origin-id xmlns="urn:xmpp:sid:0" id="a3f9c2d1-77e4-4b0a-9c61-2f0d8e5b1c3a")`}},
		{"default namespace override", `<iq type='result'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query></iq>`,
			[]string{`{jabber:client}iq type="result"({jabber:iq:roster}query xmlns="jabber:iq:roster"({jabber:iq:roster}item jid="a@b"))`}},
		{"undeclare default", `<x xmlns='urn:a'><y xmlns=''><z/></y></x>`,
			[]string{`{urn:a}x xmlns="urn:a"({}y xmlns=""({}z))`}},
		{"prefixes", `<message><x:foo xmlns:x='urn:x' x:a='1' b='2'><x:bar/><baz/></x:foo></message>`,
			[]string{`{jabber:client}message({urn:x}x:foo xmlns:x="urn:x" x:a="1" b="2"({urn:x}x:bar,{jabber:client}baz))`}},
		{"header prefix made self-contained", `<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>`,
			[]string{stream + `stream:features xmlns:stream="http://etherx.jabber.org/streams"({urn:ietf:params:xml:ns:xmpp-tls}starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"({urn:ietf:params:xml:ns:xmpp-tls}required))`}},
		{"header prefix used deep and by attribute", `<message><x stream:a='1'/></message>`,
			[]string{`{jabber:client}message xmlns:stream="http://etherx.jabber.org/streams"({jabber:client}x stream:a="1")`}},
		{"header prefix shadowed", `<stream:error xmlns:stream='urn:other'/>`,
			[]string{`{urn:other}stream:error xmlns:stream="urn:other"`}},
		{"cdata merges with text", `<message><body>a<![CDATA[<b>&amp;]]>c<![CDATA[]]></body></message>`,
			[]string{`{jabber:client}message({jabber:client}body("a<b>&amp;c"))`}},
		{"cdata alone", `<m><![CDATA[x]]y]]></m>`, []string{`{jabber:client}m("x]]y")`}},
		{"references", `<m a='&lt;&#x9;&#10;&#13;&quot;&apos;'>&#65;&#x42;&#x1F600;&lt;&gt;&amp;&quot;&apos;&#0065;</m>`,
			[]string{`{jabber:client}m a="<\t\n\r\"'"("AB😀<>&\"'A")`}},
		{"xml:lang and declared xml prefix", `<m xml:lang='de' xmlns:xml='http://www.w3.org/XML/1998/namespace'><xml:x/></m>`,
			[]string{`{jabber:client}m xml:lang="de" xmlns:xml="http://www.w3.org/XML/1998/namespace"({http://www.w3.org/XML/1998/namespace}xml:x)`}},
		{"mixed content", `<p>a<b>b</b>c<i/>d</p>`,
			[]string{`{jabber:client}p("a",{jabber:client}b("b"),"c",{jabber:client}i,"d")`}},
		{"empty elements", `<a></a><b/><c ></c >`,
			[]string{`{jabber:client}a`, `{jabber:client}b`, `{jabber:client}c`}},
		{"keepalives", " \n\t\r <a/>\n \n<b/>  ", []string{`{jabber:client}a`, `{jabber:client}b`}},
		{"whitespace in tags", "<m  to = \"x\"\n\tfrom\t=\t'y'  ></m\n>", []string{`{jabber:client}m to="x" from="y"`}},
		{"line ends", "<m a='x\r\ny\rz\tw\nv'>a\r\nb\rc\n<![CDATA[\r\n]]></m>",
			[]string{`{jabber:client}m a="x y z w v"("a\nb\nc\n\n")`}},
		{"markup-like values", `<m a='>]]>' b="it's">x > y ]] ]></m>`,
			[]string{`{jabber:client}m a=">]]>" b="it's"("x > y ]] ]>")`}},
		{"non-ASCII", "<ñ xmlns='urn:x' é='ü\uFFFD'>日本 \U0001F600</ñ>",
			[]string{"{urn:x}ñ xmlns=\"urn:x\" é=\"ü\uFFFD\"(\"日本 \U0001F600\")"}},
		{"whitespace text kept inside stanzas", "<m>\n  <b/>\n</m>", []string{`{jabber:client}m("\n  ",{jabber:client}b,"\n")`}},
		{"xml decl", "<?xml version='1.0'?>" + hdr + "<a/>" + hdrEnd,
			[]string{"start stream:stream " + stream, `{jabber:client}a`, "end"}},
		{"xml decl full", `<?xml version="1.0" encoding="utf-8" standalone='yes' ?>` + "\n\n" + hdr + hdrEnd,
			[]string{"start stream:stream " + stream, "end"}},
		{"leading whitespace", "\n " + hdr + " " + hdrEnd + "trailing junk is never read",
			[]string{"start stream:stream " + stream, "end"}},
		{"unprefixed header", "<stream xmlns='http://etherx.jabber.org/streams'><a/></stream >",
			[]string{"start stream " + stream, stream + "a", "end"}},
		{"s2s header with dialback", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'><db:result from='a' to='b'>key</db:result>",
			[]string{"start stream:stream " + stream, `{jabber:server:dialback}db:result from="a" to="b" xmlns:db="jabber:server:dialback"("key")`}},
	}
	for _, tt := range tests {
		in := tt.in
		if !isWholeStream(in) {
			in = hdr + in
			tt.want = append([]string{"start stream:stream " + stream}, tt.want...)
		}
		for rname, r := range readers(in) {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				got, toks, err := decodeAll(r, Limits{})
				if err != io.EOF {
					t.Fatalf("error %v after %q", err, got)
				}
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
				checkRoundTrip(t, toks)
			})
		}
	}
}

// isWholeStream tells table inputs that carry their own stream header from
// stanzas to be put after hdr.
func isWholeStream(in string) bool {
	in = strings.TrimLeft(in, " \n")
	return strings.HasPrefix(in, "<?xml") || strings.HasPrefix(in, "<stream:stream") || strings.HasPrefix(in, "<stream ")
}

// checkRoundTrip re-encodes every stanza and decodes it again inside the
// same header: the trees must be equal.
func checkRoundTrip(t *testing.T, toks []Token) {
	t.Helper()
	if len(toks) == 0 || toks[0].Kind != StreamStart {
		return
	}
	header := toks[0].Elem.AppendStart(nil)
	for _, tok := range toks[1:] {
		if tok.Kind != Stanza {
			continue
		}
		out := tok.Elem.Append(nil)
		d := NewDecoder(strings.NewReader(string(header)+string(out)), Limits{})
		if _, err := d.Next(); err != nil {
			t.Fatalf("re-decoding header %s: %v", header, err)
		}
		again, err := d.Next()
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if a, b := dump(tok.Elem), dump(again.Elem); a != b {
			t.Errorf("round trip changed the tree:\n%s\n%s\nvia %s", a, b, out)
		}
		if again.Size != len(out) {
			t.Errorf("Size = %d, want %d", again.Size, len(out))
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	const (
		nwf    = "not-well-formed"
		rxml   = "restricted-xml"
		policy = "policy-violation"
		badNS  = "invalid-namespace"
	)
	small := Limits{MaxStanza: 100, MaxDepth: 3, MaxAttrs: 2}
	tests := []struct {
		name, in, cond string
		lim            Limits
		full           bool // in is a whole stream, not stanzas after hdr
	}{
		// Restricted XML (RFC 6120 §11.1).
		{"comment in stanza", `<message><!-- hi --></message>`, rxml, Limits{}, false},
		{"comment at stream level", `<!-- hi --><a/>`, rxml, Limits{}, false},
		{"comment before header", `<!-- hi -->` + hdr, rxml, Limits{}, true},
		{"PI in stanza", `<message><?foo bar?></message>`, rxml, Limits{}, false},
		{"PI at stream level", `<?foo bar?>`, rxml, Limits{}, false},
		{"xml decl after header", `<?xml version='1.0'?>`, rxml, Limits{}, false},
		{"xml decl after whitespace", " <?xml version='1.0'?>" + hdr, rxml, Limits{}, true},
		{"PI named like xml", "<?xml-stylesheet href='a'?>" + hdr, rxml, Limits{}, true},
		{"doctype", "<!DOCTYPE stream>" + hdr, rxml, Limits{}, true},
		{"entity declaration in stanza", `<m><!ENTITY x 'y'></m>`, rxml, Limits{}, false},
		{"entity reference", `<m>&nbsp;</m>`, rxml, Limits{}, false},
		{"entity reference in attribute", `<m a='&x;'/>`, rxml, Limits{}, false},

		// Not well-formed.
		{"text at stream level", `hello<a/>`, nwf, Limits{}, false},
		{"cdata at stream level", `<![CDATA[ ]]>`, nwf, Limits{}, false},
		{"text before header", `hi` + hdr, nwf, Limits{}, true},
		{"bad element name", `<1a/>`, nwf, Limits{}, false},
		{"bad element name inside", `<a><-b/></a>`, nwf, Limits{}, false},
		{"space after <", `< a/>`, nwf, Limits{}, false},
		{"bad attribute name", `<a 1b='x'/>`, nwf, Limits{}, false},
		{"two colons", `<a:b:c xmlns:a='u'/>`, nwf, Limits{}, false},
		{"leading colon", `<:a/>`, nwf, Limits{}, false},
		{"trailing colon attr", `<a b:='1'/>`, nwf, Limits{}, false},
		{"local part starts with digit", `<a xmlns:p='u' p:1='x'/>`, nwf, Limits{}, false},
		{"mismatched end tag", `<a></b>`, nwf, Limits{}, false},
		{"misnested", `<a><b></a></b>`, nwf, Limits{}, false},
		{"end tag prefix differs", `<p:a xmlns:p='u' xmlns:q='u'></q:a>`, nwf, Limits{}, false},
		{"end tag longer name", `<a></ab>`, nwf, Limits{}, false},
		{"end tag with attribute", `<a></a x='1'>`, nwf, Limits{}, false},
		{"duplicate attribute", `<a x='1' x='2'/>`, nwf, Limits{}, false},
		{"duplicate expanded attribute", `<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`, nwf, Limits{}, false},
		{"duplicate xmlns", `<a xmlns='u' xmlns='u'/>`, nwf, Limits{}, false},
		{"unquoted attribute", `<a x=1/>`, nwf, Limits{}, false},
		{"attribute without value", `<a x/>`, nwf, Limits{}, false},
		{"no space between attributes", `<a x='1'y='2'/>`, nwf, Limits{}, false},
		{"space inside />", `<a / ></a>`, nwf, Limits{}, false},
		{"junk in tag", `<a x='1' ! />`, nwf, Limits{}, false},
		{"< in attribute", `<a x='<'/>`, nwf, Limits{}, false},
		{"]]> in text", `<a>x]]>y</a>`, nwf, Limits{}, false},
		{"invalid UTF-8 text", "<a>\xff</a>", nwf, Limits{}, false},
		{"invalid UTF-8 attribute", "<a x='\xc3'/>", nwf, Limits{}, false},
		{"invalid UTF-8 name", "<a\xc3\x28/>", nwf, Limits{}, false},
		{"surrogate encoded in UTF-8", "<a>\xed\xa0\x80</a>", nwf, Limits{}, false},
		{"U+FFFE", "<a>\uFFFE</a>", nwf, Limits{}, false},
		{"control char text", "<a>\x01</a>", nwf, Limits{}, false},
		{"control char attribute", "<a x='\x1b'/>", nwf, Limits{}, false},
		{"NUL", "<a>\x00</a>", nwf, Limits{}, false},
		{"control char in cdata", "<a><![CDATA[\x02]]></a>", nwf, Limits{}, false},
		{"charref zero", `<a>&#0;</a>`, nwf, Limits{}, false},
		{"charref control", `<a>&#x1;</a>`, nwf, Limits{}, false},
		{"charref surrogate", `<a>&#xD800;</a>`, nwf, Limits{}, false},
		{"charref FFFE", `<a>&#xFFFE;</a>`, nwf, Limits{}, false},
		{"charref too big", `<a>&#x110000;</a>`, nwf, Limits{}, false},
		{"charref overflow", `<a>&#99999999999999999999999;</a>`, nwf, Limits{}, false},
		{"charref empty", `<a>&#;</a>`, nwf, Limits{}, false},
		{"charref empty hex", `<a>&#x;</a>`, nwf, Limits{}, false},
		{"charref uppercase X", `<a>&#X41;</a>`, nwf, Limits{}, false},
		{"charref no semicolon", `<a>&#65 </a>`, nwf, Limits{}, false},
		{"bare ampersand", `<a>fish & chips</a>`, nwf, Limits{}, false},
		{"entity without semicolon", `<a>&amp </a>`, nwf, Limits{}, false},
		{"undeclared element prefix", `<p:a/>`, nwf, Limits{}, false},
		{"undeclared attribute prefix", `<a p:x='1'/>`, nwf, Limits{}, false},
		{"undeclared prefix starting xmlns", `<a xmlnsns:x='1'/>`, nwf, Limits{}, false},
		{"prefix out of scope", `<a><b xmlns:p='u'/><p:c/></a>`, nwf, Limits{}, false},
		{"xml prefix rebound", `<a xmlns:xml='urn:x'/>`, nwf, Limits{}, false},
		{"xml namespace bound to other prefix", `<a xmlns:x='http://www.w3.org/XML/1998/namespace'/>`, nwf, Limits{}, false},
		{"xml namespace as default", `<a xmlns='http://www.w3.org/XML/1998/namespace'/>`, nwf, Limits{}, false},
		{"xmlns prefix declared", `<a xmlns:xmlns='urn:x'/>`, nwf, Limits{}, false},
		{"xmlns namespace bound", `<a xmlns:x='http://www.w3.org/2000/xmlns/'/>`, nwf, Limits{}, false},
		{"xmlns element prefix", `<xmlns:a/>`, nwf, Limits{}, false},
		{"empty prefix declaration", `<a xmlns:p=''/>`, nwf, Limits{}, false},
		{"bad markup", `<a><!x></a>`, nwf, Limits{}, false},
		{"bad cdata start", `<a><![CDATX[x]]></a>`, nwf, Limits{}, false},
		{"bad comment start", `<a><!-x--></a>`, nwf, Limits{}, false},
		{"wrong stream end", `</stream>`, nwf, Limits{}, false},
		{"stream end first", `</stream:stream>`, nwf, Limits{}, true}, // in place of the header (see below)
		{"self-closing header", `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>`, nwf, Limits{}, true},
		{"undeclared header prefix", `<stream:stream>`, nwf, Limits{}, true},
		{"xml version", `<?xml version='1.1'?>` + hdr, nwf, Limits{}, true},
		{"xml decl without version", `<?xml encoding='UTF-8'?>` + hdr, nwf, Limits{}, true},
		{"xml decl garbage", `<?xml version='1.0' foo='bar'?>` + hdr, nwf, Limits{}, true},
		{"text between decl and header", `<?xml version='1.0'?>x` + hdr, nwf, Limits{}, true},

		// Namespace and encoding of the stream itself.
		{"wrong stream namespace", `<stream:stream xmlns:stream='urn:wrong'>`, badNS, Limits{}, true},
		{"wrong stream name", `<foo xmlns='http://etherx.jabber.org/streams'>`, badNS, Limits{}, true},
		{"stream in content namespace", `<stream xmlns='jabber:client'>`, badNS, Limits{}, true},
		{"encoding", `<?xml version='1.0' encoding='ISO-8859-1'?>` + hdr, "unsupported-encoding", Limits{}, true},

		// Limits.
		{"stanza too large", `<m>` + strings.Repeat("x", 100) + `</m>`, policy, small, false},
		{"stanza too large in attribute", `<m a='` + strings.Repeat("x", 100) + `'/>`, policy, small, false},
		{"too deep", `<a><b><c><d/></c></b></a>`, policy, small, false},
		{"too many attributes", `<a x='1' y='2' z='3'/>`, policy, small, false},
		{"too many attributes in header", `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='1' b='2'>`, policy, small, true},
		{"too many declarations in scope", manyDecls(3, 60), policy, Limits{}, false},
		{"duplicate expanded attribute among many", manyAttrs(40) + ` xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`, nwf, Limits{}, false},
		{"duplicate attribute among many", manyAttrs(40) + ` a7='x'/>`, nwf, Limits{}, false},
		{"header too large", `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='` + strings.Repeat("x", 5000) + `'>`, policy, Limits{}, true},
	}
	for _, tt := range tests {
		in := tt.in
		if !tt.full {
			in = hdr + in
		}
		for rname, r := range readers(in + strings.Repeat(" ", 10)) {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				d := NewDecoder(r, tt.lim)
				var err error
				for err == nil {
					_, err = d.Next()
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("got %v, want *Error %s", err, tt.cond)
				}
				if e.Condition != tt.cond {
					t.Fatalf("got %v, want condition %s", err, tt.cond)
				}
				if _, again := d.Next(); again != err {
					t.Errorf("error not sticky: then %v", again)
				}
			})
		}
	}
}

// manyDecls nests depth elements declaring n prefixes each.
func manyDecls(depth, n int) string {
	var b strings.Builder
	for d := range depth {
		b.WriteString("<e")
		for i := range n {
			fmt.Fprintf(&b, " xmlns:p%d_%d='u'", d, i)
		}
		b.WriteString(">")
	}
	for range depth {
		b.WriteString("</e>")
	}
	return b.String()
}

// manyAttrs opens a start tag with n distinct attributes.
func manyAttrs(n int) string {
	var b strings.Builder
	b.WriteString("<e")
	for i := range n {
		fmt.Fprintf(&b, " a%d='%d'", i, i)
	}
	return b.String()
}

func TestLimitsBoundary(t *testing.T) {
	lim := Limits{MaxStanza: 100, MaxDepth: 3, MaxAttrs: 2}
	exact := `<m>` + strings.Repeat("x", 100-len(`<m></m>`)) + `</m>`
	ok := []string{exact, `<a><b><c/></b></a>`, `<a x='1' y='2'><b x='1' y='2'/></a>`}
	big := Limits{MaxAttrs: 100}
	for _, s := range []string{manyDecls(2, 64), manyAttrs(60) + ` xmlns:p='u' xmlns:q='v' p:x='1' q:x='2'/>`} {
		if _, _, err := decodeAll(strings.NewReader(hdr+s), big); err != io.EOF {
			t.Errorf("%.30s: %v", s, err)
		}
	}
	for _, s := range ok {
		for rname, r := range readers("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>" + s + "<m/>") {
			got, toks, err := decodeAll(r, lim)
			if err != io.EOF || len(got) != 3 {
				t.Errorf("%s %.20s: %v after %d tokens", rname, s, err, len(got))
				continue
			}
			if toks[1].Size != len(s) {
				t.Errorf("Size = %d, want %d", toks[1].Size, len(s))
			}
		}
	}
}

// endless serves a prefix then the filler byte forever, counting bytes.
type endless struct {
	prefix string
	fill   byte
	n      int
}

func (e *endless) Read(p []byte) (int, error) {
	k := copy(p, e.prefix)
	e.prefix = e.prefix[k:]
	for i := k; i < len(p); i++ {
		p[i] = e.fill
	}
	e.n += len(p)
	return len(p), nil
}

func TestOversizeFailsEarly(t *testing.T) {
	for _, prefix := range []string{
		hdr + "<message><body>", // text
		hdr + "<message to='",   // attribute value
		hdr + "<message><![CDATA[",
		"<stream:stream a='",    // header
		hdr + "</stream:stream", // end tag
	} {
		r := &endless{prefix: prefix, fill: 'a'}
		d := NewDecoder(r, Limits{MaxStanza: 10000})
		var err error
		for err == nil {
			_, err = d.Next()
		}
		var e *Error
		if !errors.As(err, &e) || e.Condition != "policy-violation" {
			t.Errorf("%q: got %v", prefix, err)
		}
		if r.n > 10000+len(prefix)+2*minBuf || len(d.buf) > 10000 {
			t.Errorf("%q: read %d bytes, buffer %d", prefix, r.n, len(d.buf))
		}
	}
}

func TestBufferShrinksAfterLargeStanza(t *testing.T) {
	big := `<m>` + strings.Repeat("x", 100000) + `</m>`
	d := NewDecoder(strings.NewReader(hdr+big+`<a/>`), Limits{})
	if len(d.buf) > minBuf {
		t.Fatalf("initial buffer %d", len(d.buf))
	}
	for i := range 3 {
		tok, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && tok.Size != len(big) {
			t.Errorf("Size = %d", tok.Size)
		}
		if len(d.buf) > shrinkAbove {
			t.Errorf("after token %d the buffer is %d bytes", i, len(d.buf))
		}
	}
	if d.p.s != "" || d.p.elems != nil || len(d.p.stack) != 0 {
		t.Error("parser keeps references to the last stanza")
	}
}

func TestResetAndBuffered(t *testing.T) {
	in := hdr + `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`
	d := NewDecoder(strings.NewReader(in), Limits{})
	for range 2 {
		if _, err := d.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.Buffered(); n != 0 {
		t.Fatalf("Buffered = %d before TLS", n)
	}
	// The peer wrongly pipelines data after <starttls/>: the server must see it.
	d = NewDecoder(strings.NewReader(in+"<junk/>"), Limits{})
	for range 2 {
		if _, err := d.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.Buffered(); n != len("<junk/>") {
		t.Fatalf("Buffered = %d, want %d", n, len("<junk/>"))
	}
	// After TLS (or SASL) the stream restarts, possibly with a declaration.
	d.Reset(strings.NewReader("<?xml version='1.0'?>" + hdr + `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`))
	if d.Buffered() != 0 {
		t.Fatal("Reset kept buffered bytes")
	}
	for _, want := range []Kind{StreamStart, Stanza} {
		tok, err := d.Next()
		if err != nil || tok.Kind != want {
			t.Fatalf("got %v %v, want %v", tok.Kind, err, want)
		}
	}
	// Reset also clears an error.
	d.Reset(strings.NewReader("garbage"))
	if _, err := d.Next(); err == nil {
		t.Fatal("no error")
	}
	d.Reset(strings.NewReader(hdr))
	if tok, err := d.Next(); err != nil || tok.Kind != StreamStart {
		t.Fatalf("after Reset: %v %v", tok, err)
	}
}

// scriptReader plays back data and errors in order.
type scriptReader []any

var errTimeout = errors.New("i/o timeout")

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(*s) == 0 {
		return 0, io.EOF
	}
	step := (*s)[0]
	*s = (*s)[1:]
	if err, ok := step.(error); ok {
		return 0, err
	}
	return copy(p, step.(string)), nil
}

func TestReadErrorsAreNotSticky(t *testing.T) {
	// A read deadline in the middle of a stanza must not lose it.
	r := &scriptReader{hdr, "<a>te", errTimeout, errTimeout, "xt</a>"}
	d := NewDecoder(r, Limits{})
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := d.Next(); !errors.Is(err, errTimeout) {
			t.Fatalf("got %v, want the timeout", err)
		}
	}
	tok, err := d.Next()
	if err != nil || dump(tok.Elem) != `{jabber:client}a("text")` {
		t.Fatalf("got %v %v", tok, err)
	}
}

func TestEOF(t *testing.T) {
	for in, want := range map[string]error{
		"":                io.EOF,
		"  \n":            io.EOF,
		hdr:               io.EOF,
		hdr + "<a/>  ":    io.EOF,
		hdr + "<a>":       io.ErrUnexpectedEOF,
		hdr[:10]:          io.ErrUnexpectedEOF,
		hdr + "<":         io.ErrUnexpectedEOF,
		hdr + "<a x='1":   io.ErrUnexpectedEOF,
		hdr + hdrEnd + "": io.EOF,
	} {
		_, _, err := decodeAll(iotest.OneByteReader(strings.NewReader(in)), Limits{})
		if !errors.Is(err, want) {
			t.Errorf("%q: got %v, want %v", in, err, want)
		}
	}
}

func TestTokenSizes(t *testing.T) {
	decl := "<?xml version='1.0'?>\n"
	_, toks, err := decodeAll(strings.NewReader(decl+hdr+" <a/> \n"+hdrEnd), Limits{})
	if err != io.EOF {
		t.Fatal(err)
	}
	want := []int{len(decl + hdr), len("<a/>"), len(hdrEnd)}
	for i, tok := range toks {
		if tok.Size != want[i] {
			t.Errorf("token %d Size = %d, want %d", i, tok.Size, want[i])
		}
	}
	if toks[0].Elem.Nodes != nil || toks[2].Elem != nil {
		t.Error("header has nodes or end has an element")
	}
}
