// Package caps verifies and caches entity capabilities (XEP-0115): which
// features a client's "ver" string stands for.
package caps

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"slices"
	"strings"
	"sync"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	// NS is the caps namespace of the <c/> element in presence.
	NS        = "http://jabber.org/protocol/caps"
	nsInfo    = "http://jabber.org/protocol/disco#info"
	nsDataFrm = "jabber:x:data"
)

// maxEntries bounds the cache: clients cannot make the server hold
// unlimited feature lists by inventing versions.
const maxEntries = 4096

// Caps is what a presence's <c/> says.
type Caps struct {
	Node, Ver, Hash string
}

// FromPresence reads the <c/> of a presence; ok is false when there is none
// or it uses a hash we cannot verify.
func FromPresence(p *wire.Element) (c Caps, ok bool) {
	e := p.Child("c", NS)
	if e == nil {
		return Caps{}, false
	}
	c = Caps{Node: e.Attr("node"), Ver: e.Attr("ver"), Hash: e.Attr("hash")}
	if c.Ver == "" || c.Node == "" || (c.Hash != "sha-1" && c.Hash != "sha-256") || len(c.Ver) > 128 || len(c.Node) > 1024 {
		return Caps{}, false
	}
	return c, true
}

// Cache maps verified ver strings to feature sets; it is safe for
// concurrent use.
type Cache struct {
	mu      sync.Mutex
	known   map[string]map[string]bool
	waiters map[string][]func(map[string]bool)
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{known: map[string]map[string]bool{}, waiters: map[string][]func(map[string]bool){}}
}

// Features returns the features of ver if known.
func (c *Cache) Features(ver string) (map[string]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.known[ver]
	return f, ok
}

// Wait registers fn to run with the features of ver once they are learnt;
// it reports whether the caller is the first to wait, and so must query.
func (c *Cache) Wait(ver string, fn func(map[string]bool)) (first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first = len(c.waiters[ver]) == 0
	if len(c.waiters) >= maxEntries && first {
		return false // too many outstanding versions: do not query more
	}
	c.waiters[ver] = append(c.waiters[ver], fn)
	return first
}

// Learn stores the disco#info result for c if its hash matches c.Ver, and
// runs the waiters; an unverifiable result is dropped with its waiters, so
// a client cannot poison the cache for others.
func (c *Cache) Learn(cp Caps, query *wire.Element) bool {
	ok := query != nil && Ver(query, cp.Hash) == cp.Ver
	c.mu.Lock()
	ws := c.waiters[cp.Ver]
	delete(c.waiters, cp.Ver)
	var feats map[string]bool
	if ok {
		feats = map[string]bool{}
		for f := range query.Elements() {
			if f.Local() == "feature" {
				feats[f.Attr("var")] = true
			}
		}
		if len(c.known) >= maxEntries {
			clear(c.known)
		}
		c.known[cp.Ver] = feats
	}
	c.mu.Unlock()
	if ok {
		for _, w := range ws {
			w(feats)
		}
	}
	return ok
}

// Forget drops the waiters of ver (the query failed or timed out).
func (c *Cache) Forget(ver string) {
	c.mu.Lock()
	delete(c.waiters, ver)
	c.mu.Unlock()
}

// Ver computes the XEP-0115 §5 verification string of a disco#info query.
func Ver(query *wire.Element, hashName string) string {
	var h hash.Hash
	switch hashName {
	case "sha-1":
		h = sha1.New()
	case "sha-256":
		h = sha256.New()
	default:
		return ""
	}
	var ids, feats []string
	type form struct {
		typ    string
		fields []string
	}
	var forms []form
	for e := range query.Elements() {
		switch {
		case e.Local() == "identity":
			ids = append(ids, e.Attr("category")+"/"+e.Attr("type")+"/"+e.Attr("xml:lang")+"/"+e.Attr("name"))
		case e.Local() == "feature":
			feats = append(feats, e.Attr("var"))
		case e.Local() == "x" && e.Space == nsDataFrm:
			var f form
			for fld := range e.Elements() {
				if fld.Local() != "field" {
					continue
				}
				var vals []string
				for v := range fld.Elements() {
					if v.Local() == "value" {
						vals = append(vals, v.Text())
					}
				}
				if fld.Attr("var") == "FORM_TYPE" {
					if len(vals) > 0 {
						f.typ = vals[0]
					}
					continue
				}
				slices.Sort(vals)
				f.fields = append(f.fields, fld.Attr("var")+"<"+strings.Join(vals, "<"))
			}
			slices.Sort(f.fields)
			forms = append(forms, f)
		}
	}
	slices.Sort(ids)
	slices.Sort(feats)
	slices.SortFunc(forms, func(a, b form) int { return strings.Compare(a.typ, b.typ) })
	var s strings.Builder
	for _, v := range ids {
		s.WriteString(v + "<")
	}
	for _, v := range feats {
		s.WriteString(v + "<")
	}
	for _, f := range forms {
		s.WriteString(f.typ + "<")
		for _, v := range f.fields {
			s.WriteString(v + "<")
		}
	}
	h.Write([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
