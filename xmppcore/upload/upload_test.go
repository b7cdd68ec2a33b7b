package upload

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

type fakeRouter struct {
	mu  sync.Mutex
	out []*wire.Element
}

func (f *fakeRouter) Deliver(st *wire.Element, from, to jid.JID) {
	f.mu.Lock()
	f.out = append(f.out, st)
	f.mu.Unlock()
}

func (f *fakeRouter) last() *wire.Element {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out[len(f.out)-1]
}

func newTest(t *testing.T) (*Service, *fakeRouter, *httptest.Server) {
	t.Helper()
	rt := &fakeRouter{}
	var s *Service
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.Handler().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	var err error
	s, err = New(Config{Domain: "upload.example.org", Local: func(d string) bool { return d == "example.org" },
		Dir: t.TempDir(), PublicURL: srv.URL + "/files", MaxSize: 1000, SlotLife: time.Minute, Router: rt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rt, srv
}

func ask(t *testing.T, s *Service, rt *fakeRouter, from, req string) *wire.Element {
	t.Helper()
	st, err := wire.ParseElement(`<iq type='get' id='r' from='` + from + `' to='upload.example.org'>` + req + `</iq>`)
	if err != nil {
		t.Fatal(err)
	}
	s.Route(st, jid.MustParse(from), jid.MustParse("upload.example.org"))
	return rt.last()
}

func do(t *testing.T, method, u, ct, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestUploadRoundTrip(t *testing.T) {
	s, rt, _ := newTest(t)
	res := ask(t, s, rt, "alice@example.org/phone", `<request xmlns='urn:xmpp:http:upload:0' filename='notes ünï.txt' size='11' content-type='text/plain'/>`)
	slot := res.Child("slot", NS)
	if res.Attr("type") != "result" || slot == nil {
		t.Fatalf("slot request: %s", res)
	}
	put, get := slot.Child("put", "").Attr("url"), slot.Child("get", "").Attr("url")
	if r, b := do(t, http.MethodGet, get, "", ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("GET before PUT: %d %s", r.StatusCode, b)
	}
	if r, _ := do(t, http.MethodPut, put, "text/plain", "hello"); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of the wrong size: %d", r.StatusCode)
	}
	// The slot was used up by the failed attempt: a slot is for one PUT.
	if r, _ := do(t, http.MethodPut, put, "text/plain", "hello world"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("second PUT on a slot: %d", r.StatusCode)
	}
	slot = ask(t, s, rt, "alice@example.org/phone", `<request xmlns='urn:xmpp:http:upload:0' filename='notes ünï.txt' size='11' content-type='text/plain'/>`).Child("slot", NS)
	put, get = slot.Child("put", "").Attr("url"), slot.Child("get", "").Attr("url")
	if r, b := do(t, http.MethodPut, put, "text/plain", "hello world"); r.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", r.StatusCode, b)
	}
	r, b := do(t, http.MethodGet, get, "", "")
	if r.StatusCode != http.StatusOK || b != "hello world" || r.Header.Get("Content-Type") != "text/plain" ||
		!strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET: %d %q %v", r.StatusCode, b, r.Header)
	}
}

func TestUploadRefusals(t *testing.T) {
	s, rt, srv := newTest(t)
	if res := ask(t, s, rt, "eve@elsewhere.example/x", `<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/>`); !strings.Contains(res.String(), "<forbidden") {
		t.Errorf("a remote user got %s", res)
	}
	res := ask(t, s, rt, "alice@example.org/x", `<request xmlns='urn:xmpp:http:upload:0' filename='big' size='1001'/>`)
	if !strings.Contains(res.String(), "<file-too-large xmlns='urn:xmpp:http:upload:0'><max-file-size>1000</max-file-size>") {
		t.Errorf("too large: %s", res)
	}
	for _, bad := range []string{`filename='' size='1'`, `filename='a' size='-1'`, `filename='a' size='x'`} {
		if res := ask(t, s, rt, "alice@example.org/x", `<request xmlns='urn:xmpp:http:upload:0' `+bad+`/>`); !strings.Contains(res.String(), "<bad-request") {
			t.Errorf("%s: %s", bad, res)
		}
	}
	// Names cannot climb out of the store.
	res = ask(t, s, rt, "alice@example.org/x", `<request xmlns='urn:xmpp:http:upload:0' filename='../../etc/passwd' size='1'/>`)
	if u := res.Child("slot", NS).Child("put", "").Attr("url"); !strings.HasSuffix(u, "/file.._.._etc_passwd") {
		t.Errorf("slot URL %s", u)
	}
	for _, p := range []string{"/files/upload/AAAA/x", "/files/upload/../../x", "/other", "/files/upload/" + strings.Repeat("A", 24) + "/.type"} {
		if r, _ := do(t, http.MethodGet, srv.URL+p, "", ""); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, r.StatusCode)
		}
	}
	if r, _ := do(t, http.MethodDelete, srv.URL+"/files/upload/"+strings.Repeat("A", 24)+"/x", "", ""); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", r.StatusCode)
	}
	// Disco says what the service does and allows.
	if res := ask(t, s, rt, "alice@example.org/x", `<query xmlns='http://jabber.org/protocol/disco#info'/>`); !strings.Contains(res.String(), "<feature var='urn:xmpp:http:upload:0'/>") || !strings.Contains(res.String(), "<value>1000</value>") {
		t.Errorf("disco: %s", res)
	}
}

func TestStore(t *testing.T) {
	s, _, _ := newTest(t)
	u, err := s.Store("report.pdf", "application/pdf", []byte("%PDF"))
	if err != nil {
		t.Fatal(err)
	}
	r, b := do(t, http.MethodGet, u, "", "")
	if r.StatusCode != http.StatusOK || b != "%PDF" || r.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("GET %s: %d %q", u, r.StatusCode, b)
	}
	if _, err := s.Store("big", "x", make([]byte, 1001)); err == nil {
		t.Fatal("stored more than the limit")
	}
	if name, ct, data, ok := s.Open(u); !ok || name != "report.pdf" || ct != "application/pdf" || string(data) != "%PDF" {
		t.Fatalf("Open(%s) = %q %q %q %v", u, name, ct, data, ok)
	}
	for _, other := range []string{"https://elsewhere.example/upload/x/y", u + "x", strings.Replace(u, "report.pdf", ".type", 1), "::"} {
		if _, _, _, ok := s.Open(other); ok {
			t.Errorf("Open(%s) found a file", other)
		}
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a.txt", "../x", "/etc/passwd", ".hidden", "a\x00b", "ünï"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		out, err := cleanName(name)
		if err != nil {
			return
		}
		if out == "" || strings.ContainsAny(out, "/\\") || strings.HasPrefix(out, ".") || !utf8.ValidString(out) {
			t.Fatalf("cleanName(%q) = %q", name, out)
		}
	})
}
