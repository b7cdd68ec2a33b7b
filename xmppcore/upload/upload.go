// Package upload is the HTTP file upload service (XEP-0363): it hands out upload slots over XMPP and stores and serves the files over HTTPS.
//
// A slot is a capability: an unguessable token in the URL. The PUT for a
// slot must come before it expires and match the size and content type the
// client asked for; the file is then served to anyone with its GET URL, as
// an attachment (never rendered by the browser). Bridges store files
// through Store, to offer mail attachments as links.
package upload

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// NS is the XEP-0363 namespace.
const NS = "urn:xmpp:http:upload:0"

// Deliverer sends the service's answers; *router.Router implements it.
type Deliverer interface {
	Deliver(st *wire.Element, from, to jid.JID)
}

// Config configures a Service.
type Config struct {
	Domain string // the service's domain, e.g. upload.example.org
	// Local reports whether a domain's users may upload (the server's hosts).
	Local     func(domain string) bool
	Dir       string // where files are kept
	PublicURL string // base of the slot URLs, e.g. https://upload.example.org:5443
	MaxSize   int64  // largest file, bytes
	SlotLife  time.Duration
	Router    Deliverer
	Log       *slog.Logger
}

// maxPending bounds the slots handed out and not yet used.
const maxPending = 10000

// maxName bounds a file name, in bytes.
const maxName = 200

type slot struct {
	name, contentType string
	size              int64
	expires           time.Time
}

// Service is the upload service of one domain. It is safe for concurrent use.
type Service struct {
	cfg  Config
	base *url.URL
	root *os.Root

	mu      sync.Mutex
	pending map[string]slot // by token
}

// New opens the file store (creating the directory) and builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.SlotLife <= 0 {
		cfg.SlotLife = 5 * time.Minute
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.PublicURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("upload: public URL %q is not an http(s) URL", cfg.PublicURL)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	return &Service{cfg: cfg, base: base, root: root, pending: map[string]slot{}}, nil
}

// Close releases the file store.
func (s *Service) Close() error { return s.root.Close() }

// Identity is the service's disco identity.
func (s *Service) Identity() (category, typ, name string) { return "store", "file", "HTTP File Upload" }

// Route answers the iqs for the service: disco#info and slot requests.
func (s *Service) Route(st *wire.Element, from, to jid.JID) {
	if st.Local() != "iq" {
		if st.Local() == "message" && st.Attr("type") != "error" {
			s.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""), to, from)
		}
		return
	}
	typ := st.Attr("type")
	if typ != "get" && typ != "set" {
		return
	}
	p := stanza.Payload(st)
	switch {
	case p == nil:
		s.reply(stanza.Error(st, stanza.Modify, "bad-request", ""), to, from)
	case p.Space == stanza.NSDiscoInfo && typ == "get" && p.Attr("node") == "":
		s.reply(s.discoInfo(st), to, from)
	case p.Space == stanza.NSPing:
		s.reply(stanza.Result(st), to, from)
	case p.Space == NS && p.Local() == "request" && typ == "get":
		s.reply(s.request(st, p, from), to, from)
	default:
		s.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""), to, from)
	}
}

func (s *Service) reply(st *wire.Element, from, to jid.JID) { s.cfg.Router.Deliver(st, from, to) }

func (s *Service) discoInfo(st *wire.Element) *wire.Element {
	res := stanza.Result(st)
	q := res.AddChild(wire.New("query", stanza.NSDiscoInfo))
	cat, typ, name := s.Identity()
	q.AddChild(wire.New("identity", "")).SetAttr("category", cat).SetAttr("type", typ).SetAttr("name", name)
	q.AddChild(wire.New("feature", "")).SetAttr("var", NS)
	q.AddChild(wire.New("feature", "")).SetAttr("var", stanza.NSDiscoInfo)
	x := q.AddChild(wire.New("x", "jabber:x:data"))
	x.SetAttr("type", "result")
	f := x.AddChild(wire.New("field", ""))
	f.SetAttr("var", "FORM_TYPE").SetAttr("type", "hidden")
	f.AddChild(wire.New("value", "")).AddText(NS)
	f = x.AddChild(wire.New("field", ""))
	f.SetAttr("var", "max-file-size")
	f.AddChild(wire.New("value", "")).AddText(strconv.FormatInt(s.cfg.MaxSize, 10))
	return res
}

// request hands out a slot (XEP-0363 §4).
func (s *Service) request(st, p *wire.Element, from jid.JID) *wire.Element {
	if s.cfg.Local != nil && !s.cfg.Local(from.Domain()) || from.Local() == "" {
		return stanza.Error(st, stanza.Auth, "forbidden", "only this server's users may upload")
	}
	name, err := cleanName(p.Attr("filename"))
	if err != nil {
		return stanza.Error(st, stanza.Modify, "bad-request", err.Error())
	}
	size, err := strconv.ParseInt(p.Attr("size"), 10, 64)
	if err != nil || size <= 0 {
		return stanza.Error(st, stanza.Modify, "bad-request", "size must be a positive number of bytes")
	}
	if size > s.cfg.MaxSize {
		e := stanza.Error(st, stanza.Modify, "not-acceptable", fmt.Sprintf("the largest file is %d bytes", s.cfg.MaxSize))
		tl := e.Child("error", "").AddChild(wire.New("file-too-large", NS))
		tl.AddChild(wire.New("max-file-size", "")).AddText(strconv.FormatInt(s.cfg.MaxSize, 10))
		return e
	}
	ct := p.Attr("content-type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	if len(ct) > 200 || strings.ContainsAny(ct, "\r\n") {
		return stanza.Error(st, stanza.Modify, "bad-request", "invalid content type")
	}
	token, err := s.add(slot{name: name, contentType: ct, size: size})
	if err != nil {
		return stanza.Error(st, stanza.Wait, "resource-constraint", "too many uploads pending; try again later")
	}
	u := s.fileURL(token, name)
	res := stanza.Result(st)
	sl := res.AddChild(wire.New("slot", NS))
	sl.AddChild(wire.New("put", "")).SetAttr("url", u)
	sl.AddChild(wire.New("get", "")).SetAttr("url", u)
	return res
}

func (s *Service) add(sl slot) (string, error) {
	token := newToken()
	now := time.Now()
	sl.expires = now.Add(s.cfg.SlotLife)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= maxPending {
		for t, p := range s.pending {
			if now.After(p.expires) {
				delete(s.pending, t)
			}
		}
		if len(s.pending) >= maxPending {
			return "", errors.New("too many pending slots")
		}
	}
	s.pending[token] = sl
	return token, nil
}

// take removes and returns a pending slot that has not expired.
func (s *Service) take(token string) (slot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.pending[token]
	if ok {
		delete(s.pending, token)
	}
	return sl, ok && time.Now().Before(sl.expires)
}

func (s *Service) fileURL(token, name string) string {
	u := *s.base
	u.Path = path.Join(u.Path, "upload", token, name)
	return u.String()
}

// Store keeps a file produced inside the server (a mail attachment) and
// returns its GET URL.
func (s *Service) Store(name, contentType string, data []byte) (string, error) {
	name, err := cleanName(name)
	if err != nil {
		name = "attachment"
	}
	if int64(len(data)) > s.cfg.MaxSize {
		return "", fmt.Errorf("upload: %d bytes is more than %d", len(data), s.cfg.MaxSize)
	}
	token := newToken()
	if err := s.write(token, name, contentType, data); err != nil {
		return "", err
	}
	return s.fileURL(token, name), nil
}

// Open returns a file this service stores, given its GET URL; false for
// any other URL (another host, a file not here).
func (s *Service) Open(rawURL string) (name, contentType string, data []byte, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != s.base.Scheme || u.Host != s.base.Host {
		return "", "", nil, false
	}
	token, name, found := s.split(u.Path)
	if !found || strings.HasPrefix(name, ".") {
		return "", "", nil, false
	}
	fi, err := s.root.Stat(token + "/" + name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > s.cfg.MaxSize {
		return "", "", nil, false
	}
	data, err = s.root.ReadFile(token + "/" + name)
	if err != nil {
		return "", "", nil, false
	}
	contentType = "application/octet-stream"
	if b, err := s.root.ReadFile(token + "/.type"); err == nil && len(b) > 0 {
		contentType = string(b)
	}
	return name, contentType, data, true
}

func newToken() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cleanName makes a client's file name safe as one path element.
func cleanName(name string) (string, error) {
	if name == "" || len(name) > maxName || !utf8.ValidString(name) {
		return "", errors.New("a file name of 1 to 200 bytes of UTF-8 is required")
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == '/' || r == '\\' || unicode.IsControl(r):
			b.WriteRune('_')
		default:
			b.WriteRune(r)
		}
	}
	out := strings.TrimSpace(b.String())
	if out == "" || out == "." || out == ".." || strings.HasPrefix(out, ".") {
		out = "file" + out
	}
	return out, nil
}
