package wire

import "testing"

func TestTemplate(t *testing.T) {
	e, err := ParseElement(`<message from='room@muc.example/ni&apos;ck' type='groupchat' id='x'><body>a &lt; b</body></message>`)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := NewTemplate(e, "to")
	for _, to := range []string{"alice@example.org/phone", "bob@example.org/it's <here>"} {
		got := string(tmpl.Append(nil, to))
		c := e.Copy()
		c.Attrs = append([]Attr{{Name: "to", Value: to}}, c.Attrs...)
		if want := c.String(); got != want {
			t.Errorf("Append(%q) = %s, want %s", to, got, want)
		}
		// What it writes reads back with the value.
		back, err := ParseElement(got)
		if err != nil || back.Attr("to") != to {
			t.Errorf("%s reads back as %v, %v", got, back, err)
		}
	}
	empty := NewTemplate(New("presence", ""), "to")
	if got := string(empty.Append(nil, "a@b")); got != "<presence to='a@b'/>" {
		t.Errorf("empty element: %s", got)
	}
}

func BenchmarkTemplateAppend(b *testing.B) {
	e, _ := ParseElement(`<message from='room@muc.example/nick' type='groupchat' id='x'><body>hello, this is a message of some length for the room</body></message>`)
	tmpl := NewTemplate(e, "to")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = tmpl.Append(buf[:0], "alice@example.org/phone")
	}
}
