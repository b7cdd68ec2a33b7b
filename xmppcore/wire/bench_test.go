package wire

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// loopReader serves head once, then body over and over, from memory.
type loopReader struct {
	head, body string
	off        int
}

func (l *loopReader) Read(p []byte) (int, error) {
	if l.head != "" {
		n := copy(p, l.head)
		l.head = l.head[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], l.body[l.off:])
		n += k
		l.off = (l.off + k) % len(l.body)
	}
	return n, nil
}

func reportStanzas(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stanzas/s")
}

func BenchmarkDecodeMessage(b *testing.B) {
	d := NewDecoder(&loopReader{head: hdr, body: sampleMessage}, Limits{})
	if tok, err := d.Next(); err != nil || tok.Kind != StreamStart {
		b.Fatal(tok, err)
	}
	b.SetBytes(int64(len(sampleMessage)))
	b.ReportAllocs()
	for b.Loop() {
		tok, err := d.Next()
		if err != nil || tok.Size != len(sampleMessage) {
			b.Fatal(tok, err)
		}
	}
	reportStanzas(b)
}

func BenchmarkAppendMessage(b *testing.B) {
	_, toks, err := decodeAll(strings.NewReader(hdr+sampleMessage), Limits{})
	if err != io.EOF {
		b.Fatal(err)
	}
	e := toks[1].Elem
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(sampleMessage)))
	b.ReportAllocs()
	for b.Loop() {
		buf = e.Append(buf[:0])
	}
	reportStanzas(b)
}

// BenchmarkEncodingXML builds the same trees with encoding/xml's namespace
// resolving tokenizer, for comparison.
func BenchmarkEncodingXML(b *testing.B) {
	d := xml.NewDecoder(&loopReader{head: hdr, body: sampleMessage})
	if _, err := d.Token(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(sampleMessage)))
	b.ReportAllocs()
	for b.Loop() {
		if e, err := stdElement(d); err != nil || e.Name != "message" {
			b.Fatal(e, err)
		}
	}
	reportStanzas(b)
}

// stdElement reads one top-level element from an encoding/xml decoder into
// an Element (attribute names are kept in their resolved form).
func stdElement(d *xml.Decoder) (*Element, error) {
	var stack []*Element
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e := &Element{Name: t.Name.Local, Space: t.Name.Space}
			for _, a := range t.Attr {
				e.Attrs = append(e.Attrs, Attr{Name: a.Name.Local, Value: a.Value})
			}
			if len(stack) > 0 {
				stack[len(stack)-1].AddChild(e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			e := stack[len(stack)-1]
			if stack = stack[:len(stack)-1]; len(stack) == 0 {
				return e, nil
			}
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].AddText(string(t))
			}
		}
	}
}
