package wire

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestElementAPI(t *testing.T) {
	msg := New("message", nsClient).SetAttr("to", "bob@example.net").SetAttr("type", "chat")
	if got := msg.String(); got != `<message xmlns='jabber:client' to='bob@example.net' type='chat'/>` {
		t.Errorf("String = %s", got)
	}
	msg.SetAttr("type", "normal")
	if msg.Attr("type") != "normal" || len(msg.Attrs) != 3 || !msg.HasAttr("to") || msg.HasAttr("from") || msg.Attr("from") != "" {
		t.Errorf("attrs %v", msg.Attrs)
	}
	msg.RemoveAttr("to")
	if msg.HasAttr("to") || len(msg.Attrs) != 2 {
		t.Errorf("RemoveAttr left %v", msg.Attrs)
	}

	body := msg.AddChild(New("body", ""))
	body.AddText("Hello ").AddText("").AddText("world")
	if len(body.Nodes) != 1 || body.Text() != "Hello world" {
		t.Errorf("body nodes %v", body.Nodes)
	}
	if c := msg.AddChild(New("x:data", "jabber:x:data")); c.Attr("xmlns:x") != "jabber:x:data" || c.Local() != "data" {
		t.Errorf("prefixed New: %s", c)
	}
	msg.AddChild(New("active", "http://jabber.org/protocol/chatstates"))

	if msg.Child("body", "") != body || msg.Child("body", "urn:other") != nil || msg.Child("", "") != body {
		t.Error("Child lookup")
	}
	if msg.Child("data", "jabber:x:data") == nil || msg.ChildText("body", "") != "Hello world" || msg.ChildText("nope", "") != "" {
		t.Error("Child by namespace / ChildText")
	}
	var names []string
	for c := range msg.Elements() {
		names = append(names, c.Name)
		if c.Name == "x:data" {
			break
		}
	}
	if !slices.Equal(names, []string{"body", "x:data"}) {
		t.Errorf("Elements = %v", names)
	}

	cp := msg.Copy()
	if cp.String() != msg.String() || dump(cp) != dump(msg) {
		t.Fatalf("Copy differs:\n%s\n%s", cp, msg)
	}
	cp.Child("body", "").AddText("!")
	cp.SetAttr("id", "1")
	if body.Text() != "Hello world" || msg.HasAttr("id") {
		t.Error("Copy shares state with the original")
	}

	msg.RemoveChildren("", "http://jabber.org/protocol/chatstates")
	msg.RemoveChildren("data", "")
	if len(msg.Nodes) != 1 || msg.Child("active", "") != nil {
		t.Errorf("RemoveChildren left %s", msg)
	}

	mixed := New("p", "")
	mixed.AddText("a")
	mixed.AddChild(New("b", ""))
	mixed.AddText("c")
	if mixed.Text() != "ac" {
		t.Errorf("Text = %q", mixed.Text())
	}
	mixed.RemoveChildren("b", "")
	if len(mixed.Nodes) != 1 || mixed.Nodes[0].Text != "ac" {
		t.Errorf("text not merged after removal: %v", mixed.Nodes)
	}
	if (&Element{Name: "x"}).Local() != "x" || New("stream:features", "").Local() != "features" {
		t.Error("Local")
	}
}

func TestAppendEscaping(t *testing.T) {
	e := &Element{Name: "m", Attrs: []Attr{{"a", "<&>'\"\t\n\r"}, {"b", "x\x01y\xffz\uFFFE"}}}
	e.AddText("<&>'\"\t\n\r]]>\x00 ok \uFFFD")
	want := `<m a='&lt;&amp;&gt;&apos;"&#x9;&#xA;&#xD;' b='x` + "\uFFFDy\uFFFDz\uFFFD" + `'>&lt;&amp;&gt;'"` + "\t\n" + `&#xD;]]&gt;` + "\uFFFD ok \uFFFD</m>"
	if got := e.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := string(e.AppendStart([]byte("x"))); got != `x<m a='&lt;&amp;&gt;&apos;"&#x9;&#xA;&#xD;' b='x`+"\uFFFDy\uFFFDz\uFFFD'>" {
		t.Errorf("AppendStart = %s", got)
	}
	var nilElem *Element
	if nilElem.String() != "" {
		t.Error("nil element")
	}

	// Whatever the strings hold, the output is well-formed and re-decodes
	// to the same tree once unrepresentable characters are replaced.
	out := e.Append(nil)
	_, toks, err := decodeAll(strings.NewReader(hdr+string(out)), Limits{})
	if err != io.EOF || len(toks) != 2 {
		t.Fatalf("re-decoding %s: %v", out, err)
	}
	got := toks[1].Elem
	if got.Attr("a") != "<&>'\"\t\n\r" || got.Text() != "<&>'\"\t\n\r]]>\uFFFD ok \uFFFD" {
		t.Errorf("re-decoded %s", dump(got))
	}
}

func TestAppendAllocations(t *testing.T) {
	_, toks, err := decodeAll(strings.NewReader(hdr+sampleMessage), Limits{})
	if err != io.EOF {
		t.Fatal(err)
	}
	e := toks[1].Elem
	if got := e.String(); got != sampleMessage {
		t.Fatalf("sample does not re-encode verbatim:\n%s", got)
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = e.Append(buf[:0]) }); n != 0 {
		t.Errorf("Append allocates %v times", n)
	}
}

// TestWithAttr: the copy has the attribute, the original does not, and a
// child added to the copy does not show in the original or in another copy
// (their children are shared up to the capped length).
func TestWithAttr(t *testing.T) {
	m := New("message", nsClient).SetAttr("type", "groupchat")
	m.AddChild(New("body", "")).AddText("hi")
	m.Nodes = slices.Grow(m.Nodes, 4) // room to append in place, were the copies not capped
	a := m.WithAttr("to", "a@example.com")
	b := m.WithAttr("to", "b@example.com")
	a.AddChild(New("x", "urn:example"))
	b.AddChild(New("y", "urn:example"))
	if got, want := a.String(), `<message xmlns='jabber:client' type='groupchat' to='a@example.com'><body>hi</body><x xmlns='urn:example'/></message>`; got != want {
		t.Errorf("copy a = %s, want %s", got, want)
	}
	if got, want := b.String(), `<message xmlns='jabber:client' type='groupchat' to='b@example.com'><body>hi</body><y xmlns='urn:example'/></message>`; got != want {
		t.Errorf("copy b = %s, want %s", got, want)
	}
	if m.HasAttr("to") || len(m.Nodes) != 1 {
		t.Errorf("original changed: %s", m)
	}
}
