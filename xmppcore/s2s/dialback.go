package s2s

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// dialbackKey is the XEP-0185 key: HMAC-SHA256 keyed with SHA-256 of the
// secret over "receiving originating streamID", in lowercase hex.
func dialbackKey(secret []byte, receiving, originating, streamID string) string {
	k := sha256.Sum256(secret)
	mac := hmac.New(sha256.New, k[:])
	mac.Write([]byte(receiving + " " + originating + " " + streamID))
	return hex.EncodeToString(mac.Sum(nil))
}

// dbRequest is a <db:result/> or <db:verify/> with its addresses checked.
type dbRequest struct {
	verify   bool   // db:verify rather than db:result
	from, to string // domains
	id       string // db:verify: the stream id being verified
	typ      string // "" for a request, else valid, invalid or error
	key      string
}

var errDialback = errors.New("s2s: malformed dialback element")

// parseDialback checks a dialback element: both addresses bare domains,
// a stream id on db:verify, a key of sane size on requests.
func parseDialback(el *wire.Element) (dbRequest, error) {
	var r dbRequest
	if el.Space != stanza.NSDialback {
		return r, errDialback
	}
	switch el.Local() {
	case "result":
	case "verify":
		r.verify = true
	default:
		return r, errDialback
	}
	from, err1 := domainOnly(el.Attr("from"))
	to, err2 := domainOnly(el.Attr("to"))
	if err1 != nil || err2 != nil {
		return r, errDialback
	}
	r.from, r.to = from, to
	r.id = el.Attr("id")
	r.typ = el.Attr("type")
	switch r.typ {
	case "", "valid", "invalid", "error":
	default:
		return r, errDialback
	}
	if r.verify && (r.id == "" || len(r.id) > 256) {
		return r, errDialback
	}
	if r.typ == "" {
		r.key = strings.TrimSpace(el.Text())
		if r.key == "" || len(r.key) > 1024 {
			return r, errDialback
		}
	}
	return r, nil
}

// domainOnly parses s as a JID that is a bare domain.
func domainOnly(s string) (string, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return "", err
	}
	if j.Local() != "" || j.Resource() != "" {
		return "", errDialback
	}
	return j.Domain(), nil
}

// dbElement builds a dialback element.
func dbElement(name, from, to, id, typ, key string) *wire.Element {
	e := wire.New("db:"+name, stanza.NSDialback)
	e.SetAttr("from", from)
	e.SetAttr("to", to)
	if id != "" {
		e.SetAttr("id", id)
	}
	if typ != "" {
		e.SetAttr("type", typ)
	}
	if key != "" {
		e.AddText(key)
	}
	return e
}
