package wire

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestDifferentialRandom runs the checks of both fuzz targets over stanza
// content generated from a small XML grammar, some of it corrupted: byte
// mutation alone seldom builds the namespace and reference combinations
// where decoders disagree.
func TestDifferentialRandom(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	rng := rand.New(rand.NewPCG(6120, 11))
	for range n {
		var b strings.Builder
		g := gen{rng: rng, b: &b}
		g.content(0)
		s := b.String()
		if rng.IntN(3) == 0 {
			s = g.mutate(s)
		}
		checkAgainstEncodingXML(t, []byte(s))
		checkDecoder(t, []byte(hdr+"<message>"+s+"</message>"+hdrEnd))
	}
}

type gen struct {
	rng *rand.Rand
	b   *strings.Builder
}

func (g *gen) pick(options ...string) string { return options[g.rng.IntN(len(options))] }

var (
	genPrefixes = []string{"", "", "", "p", "q", "xml", "stream", "xmlns", "é"}
	genLocals   = []string{"a", "body", "x", "lang", "item", "ñ", "a-b.c", "_1", "x\u0300", "a\u00b7b"}
	genURIs     = []string{"urn:a", "urn:b", "jabber:client", "", nsXML, nsXMLNS, nsStream, "urn:a b"}
	genText     = []string{"hi", " ", "\n", "\t", "\r\n", "\r", "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#65;",
		"&#x1F600;", "&#xD;", "&#10;", "&#9;", "&#xD800;", "&#0;", "&#x10FFFF;", "&#X41;", "é", "\U0001F600", ">", "]]",
		"]]>", "]", "'", "\"", "&nbsp;", "&", "\uFFFD", "\uFFFE", "\x01", "\x7f"}
)

func (g *gen) name() string {
	local := g.pick(genLocals...)
	if p := g.pick(genPrefixes...); p != "" {
		return p + ":" + local
	}
	return local
}

func (g *gen) content(depth int) {
	for range g.rng.IntN(4) {
		switch g.rng.IntN(10) {
		case 0, 1, 2:
			for range 1 + g.rng.IntN(3) {
				g.b.WriteString(g.pick(genText...))
			}
		case 3:
			g.b.WriteString("<![CDATA[" + g.pick("x", "<a>&amp;", "\r\n", "]]", "]", "é") + "]]>")
		case 4:
			if g.rng.IntN(4) == 0 {
				g.b.WriteString(g.pick("<!-- c -->", "<?pi x?>", "<!DOCTYPE x>", "<!x>"))
			}
		default:
			if depth < 4 {
				g.element(depth)
			}
		}
	}
}

func (g *gen) element(depth int) {
	name := g.name()
	g.b.WriteString("<" + name)
	used := map[string]bool{}
	for range g.rng.IntN(4) {
		var a string
		switch g.rng.IntN(4) {
		case 0:
			a = "xmlns"
		case 1:
			a = "xmlns:" + g.pick("p", "q", "xml", "stream", "xmlns", "é")
		default:
			a = g.name()
		}
		if used[a] && g.rng.IntN(4) != 0 {
			continue // mostly avoid the duplicates both decoders treat differently
		}
		used[a] = true
		q := g.pick("'", "\"")
		v := g.pick(genURIs...)
		if !strings.HasPrefix(a, "xmlns") {
			v = g.pick(genText...) + g.pick(genText...)
		}
		g.b.WriteString(g.pick(" ", "  ", "\n", "\t") + a + g.pick("=", " = ") + q + strings.ReplaceAll(v, q, "") + q)
	}
	if g.rng.IntN(3) == 0 {
		g.b.WriteString(g.pick("/>", " />"))
		return
	}
	g.b.WriteString(g.pick(">", " >"))
	g.content(depth + 1)
	g.b.WriteString("</" + name + g.pick(">", " >", "\n>"))
}

// mutate applies one byte-level corruption.
func (g *gen) mutate(s string) string {
	if s == "" {
		return "<"
	}
	i := g.rng.IntN(len(s))
	switch g.rng.IntN(4) {
	case 0:
		return s[:i] + s[i+1:]
	case 1:
		return s[:i] + g.pick("<", ">", "&", ";", "'", "\"", "/", ":", "=", "!", " ", "\r", "]", "\xff") + s[i:]
	case 2:
		j := i + g.rng.IntN(len(s)-i)
		return s[:j] + s[i:j] + s[j:]
	default:
		return s[:i]
	}
}
