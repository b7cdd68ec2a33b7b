package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const sampleStream = `<?xml version='1.0'?>` +
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id="a>b" version='1.0'>` +
	`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>` +
	" \n\t " + // whitespace keepalive
	`<presence from='a@b/c'/>` +
	`<message to='x@y/z' id="q'1" type='chat' note='a/>b'><body>tok.1 12345 xxx</body><!-- <not a tag> --><x><![CDATA[</message><y>]]></x></message>` +
	`<iq type='get' id='p1' from='y'><ping xmlns='urn:xmpp:ping'/></iq>` +
	`<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>` +
	`</stream:stream>`

var sampleItems = []string{
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id="a>b" version='1.0'>`,
	`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>`,
	`<presence from='a@b/c'/>`,
	`<message to='x@y/z' id="q'1" type='chat' note='a/>b'><body>tok.1 12345 xxx</body><!-- <not a tag> --><x><![CDATA[</message><y>]]></x></message>`,
	`<iq type='get' id='p1' from='y'><ping xmlns='urn:xmpp:ping'/></iq>`,
	`<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`,
	`</stream:stream>`,
}

func collect(t *testing.T, r io.Reader, bufSize int) []item {
	t.Helper()
	sc := newScanner(r, bufSize, 1<<16)
	var out []item
	for {
		it, err := sc.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("after %d items: %v", len(out), err)
		}
		it.raw = bytes.Clone(it.raw)
		out = append(out, it)
	}
}

func TestScannerFraming(t *testing.T) {
	readers := map[string]func() io.Reader{
		"whole":   func() io.Reader { return strings.NewReader(sampleStream) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(sampleStream)) },
		"halves":  func() io.Reader { return iotest.HalfReader(strings.NewReader(sampleStream)) },
	}
	for name, mk := range readers {
		for _, size := range []int{8, 64, 4096} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				items := collect(t, mk(), size)
				var got []string
				for _, it := range items {
					got = append(got, string(it.raw))
				}
				if !slices.Equal(got, sampleItems) {
					t.Fatalf("items:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sampleItems, "\n"))
				}
				kinds := []kind{kindStreamOpen, kindElement, kindElement, kindElement, kindElement, kindElement, kindStreamClose}
				for i, it := range items {
					if it.kind != kinds[i] {
						t.Errorf("item %d kind %d, want %d", i, it.kind, kinds[i])
					}
				}
				msg := items[3]
				if head := string(msg.raw[:msg.head]); head != `<message to='x@y/z' id="q'1" type='chat' note='a/>b'>` {
					t.Errorf("message head %q", head)
				}
			})
		}
	}
}

func TestScannerErrors(t *testing.T) {
	for name, in := range map[string]string{
		"no header":      `<message/>`,
		"lt in tag":      `<stream:stream><message <body>`,
		"too large":      `<stream:stream><message>` + strings.Repeat("x", 200) + `</message>`,
		"truncated":      `<stream:stream><message><body>`,
		"wrong header":   `<html>`,
		"close w/o open": `</stream:stream>`,
	} {
		t.Run(name, func(t *testing.T) {
			sc := newScanner(strings.NewReader(in), 16, 128)
			for range 10 {
				if _, err := sc.next(); err != nil {
					if errors.Is(err, io.EOF) && name != "truncated" {
						// "truncated" must say unexpected EOF; the others a real error.
						t.Fatalf("got plain EOF for %q", in)
					}
					if name == "truncated" && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("truncated stream: %v, want unexpected EOF", err)
					}
					return
				}
			}
			t.Fatalf("no error for %q", in)
		})
	}
}

func TestAttrValue(t *testing.T) {
	tag := []byte(`<iq xml:lang='en' id = "a'b" type='get' from='x&amp;y' empty=''>`)
	for name, want := range map[string]string{"id": "a'b", "type": "get", "from": "x&amp;y", "empty": "", "xml:lang": "en"} {
		if got := attrValue(tag, name); string(got) != want || got == nil {
			t.Errorf("attr %s = %q, want %q", name, got, want)
		}
	}
	if got := attrValue(tag, "to"); got != nil {
		t.Errorf("missing attr = %q", got)
	}
	if got := attrValue([]byte(`<iq id='unterminated>`), "id"); got != nil {
		t.Errorf("unterminated attr = %q", got)
	}
}

func TestBenchStamp(t *testing.T) {
	tok := []byte("lgabc.1")
	mk := func(s string) item {
		it := collect(t, strings.NewReader("<stream:stream>"+s), 64)[1]
		return it
	}
	for _, tc := range []struct {
		in   string
		ts   int64
		want msgStatus
	}{
		{`<message from='a' type='chat' id='1'><body>lgabc.1 987654321 xxxx</body></message>`, 987654321, msgBench},
		{`<message><body xmlns='jabber:client'>lgabc.1 5 </body></message>`, 5, msgBench},
		{`<message><bodyx>lgabc.1 5 </bodyx><body>lgabc.1 6 x</body></message>`, 6, msgBench},
		{`<message type='error'><body>lgabc.1 7 x</body><error/></message>`, 7, msgError},
		{`<message><body>lgabc.10 5 x</body></message>`, 0, msgOther}, // another phase
		{`<message><body>lgzzz.1 5 x</body></message>`, 0, msgOther},  // another run
		{`<message><body>lgabc.1 x</body></message>`, 0, msgOther},    // no digits
		{`<message><body/></message>`, 0, msgOther},                   // empty body
		{`<message type='headline'><subject>hi</subject></message>`, 0, msgOther},
		{`<message><body>lgabc.1 99999999999999999999999 x</body></message>`, 0, msgOther}, // overflow
	} {
		ts, st := benchStamp(mk(tc.in), tok)
		if st != tc.want || (st != msgOther && ts != tc.ts) {
			t.Errorf("%s: got %d,%d want %d,%d", tc.in, ts, st, tc.ts, tc.want)
		}
	}
}

func TestAppendMessageRoundTrip(t *testing.T) {
	r := &runner{cfg: Config{BodySize: 100}, pad: bytes.Repeat([]byte("x"), 100)}
	tok := []byte("lg01020304.2")
	msg := r.appendMessage(nil, []byte("<message type='chat' to='b@d/r' id='"), 42, tok, 1234567890123)
	it := collect(t, strings.NewReader("<stream:stream>"+string(msg)), 64)[1]
	if string(attrValue(it.raw[:it.head], "id")) != "42" {
		t.Errorf("id in %s", msg)
	}
	if n := len(bodyText(it.raw)); n != 100 {
		t.Errorf("body is %d bytes, want 100", n)
	}
	if ts, st := benchStamp(it, tok); st != msgBench || ts != 1234567890123 {
		t.Errorf("benchStamp(%s) = %d, %d", msg, ts, st)
	}
}

func TestControlReply(t *testing.T) {
	for in, want := range map[string]string{
		`<iq type='get' id='p1' from='example.test'><ping xmlns='urn:xmpp:ping'/></iq>`: `<iq to='example.test' id='p1' type='result'/>`,
		`<iq type="set" id="a'b"><query xmlns='jabber:iq:roster'/></iq>`:                `<iq id="a'b" type='result'/>`,
		`<iq type='get' id='v' from='s'><query xmlns='jabber:iq:version'/></iq>`:        `<iq to='s' id='v' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
		`<iq type='result' id='r'/>`: ``,
		`<presence/>`:                ``,
	} {
		it := collect(t, strings.NewReader("<stream:stream>"+in), 64)[1]
		if got := string(controlReply(it)); got != want {
			t.Errorf("reply to %s\n got %s\nwant %s", in, got, want)
		}
	}
}

func FuzzScanner(f *testing.F) {
	f.Add(uint8(3), []byte(sampleStream))
	f.Add(uint8(1), []byte(`<stream:stream><message type='error'><body>lg.1 12</body></message><iq type='get' id='x' from="y'"/>`))
	f.Add(uint8(7), []byte(`<?xml?><s:stream a='>'><!--x--><![CDATA[<]]><a b="/"/></a></s:stream>`))
	f.Add(uint8(0), []byte(`<!DOCTYPE x><stream:stream><<<>>></`))
	f.Fuzz(func(t *testing.T, chunk uint8, data []byte) {
		r := io.Reader(bytes.NewReader(data))
		if chunk%4 == 1 {
			r = iotest.OneByteReader(r)
		} else if chunk%4 == 2 {
			r = iotest.HalfReader(r)
		}
		sc := newScanner(r, int(chunk%32)+1, 4096)
		tok := []byte("lg.1")
		for range len(data) + 2 {
			it, err := sc.next()
			if err != nil {
				return
			}
			if len(it.raw) == 0 || it.raw[0] != '<' || it.raw[len(it.raw)-1] != '>' || it.head > len(it.raw) {
				t.Fatalf("bad item %q head %d", it.raw, it.head)
			}
			if it.kind == kindElement {
				benchStamp(it, tok)
				controlReply(it)
				attrValue(it.raw[:it.head], "id")
				localName(it.raw)
			}
		}
		t.Fatalf("scanner did not make progress on %q", data)
	})
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<40; v = v*11/10 + 1 {
		b := bucketOf(v)
		if b < prev || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		prev = b
		if v < 1<<37 {
			got := bucketValue(b)
			if diff := float64(got-v) / float64(max(v, 1)); diff > 0.016 || diff < -0.016 {
				t.Fatalf("bucketValue(bucketOf(%d)) = %d (%.2f%% off)", v, got, diff*100)
			}
		}
	}
	if bucketOf(-5) != 0 || bucketOf(1<<62) != numBuckets-1 {
		t.Error("out-of-range values not clamped")
	}
}

func TestQuantile(t *testing.T) {
	if q := quantile(make([]uint64, numBuckets), 0.5); q != 0 {
		t.Errorf("empty histogram p50 = %v", q)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var vals []int64
	for i := range 100000 {
		// Log-normal-ish latencies around 200µs with a long tail.
		v := int64(200e3 * math.Exp(rng.NormFloat64()))
		vals = append(vals, v)
		h.record(i, v)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	counts := h.snapshot()
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := int64(quantile(counts, q))
		if diff := float64(got-exact) / float64(exact); diff > 0.01 || diff < -0.01 {
			t.Errorf("q%.3f = %v, exact %v", q, time.Duration(got), time.Duration(exact))
		}
	}
	// Exact small values.
	small := make([]uint64, numBuckets)
	for v := range 100 {
		small[bucketOf(int64(v+1))]++
	}
	if p50, p99 := quantile(small, 0.5), quantile(small, 0.99); p50 != 50 || p99 != 99 {
		t.Errorf("1..100: p50 %d p99 %d", p50, p99)
	}
}

func BenchmarkScanDeliver(b *testing.B) {
	r := &runner{cfg: Config{BodySize: 100}, pad: bytes.Repeat([]byte("x"), 100)}
	tok := []byte("lg01020304.1")
	var stream []byte
	for i := range 1000 {
		m := r.appendMessage(nil, []byte("<message from='bench1@example.test/loadgen' type='chat' to='bench2@example.test/loadgen' id='"), uint64(i), tok, 1234567890123)
		stream = append(stream, m...)
	}
	src := &loopReader{data: stream}
	sc := newScanner(src, readBufSize, maxStanza)
	sc.open = true
	var h histogram
	b.ReportAllocs()
	b.SetBytes(int64(len(stream) / 1000))
	for b.Loop() {
		it, err := sc.next()
		if err != nil {
			b.Fatal(err)
		}
		ts, st := benchStamp(it, tok)
		if st != msgBench {
			b.Fatalf("not a bench message: %s", it.raw)
		}
		h.record(0, ts)
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	r := &runner{cfg: Config{BodySize: 100}, pad: bytes.Repeat([]byte("x"), 100)}
	tok := []byte("lg01020304.1")
	prefix := []byte("<message type='chat' to='bench2@example.test/loadgen' id='")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		seq++
		buf = r.appendMessage(buf[:0], prefix, seq, tok, 1234567890123)
	}
}

// loopReader serves data forever in 4 KiB reads, like a busy socket.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), 4096)], l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}
