package seclabel

import (
	"strconv"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Older catalog namespaces (PROTOCOLS.md §1.8.5), answered in their flat
// form but not advertised.
const (
	NSCatalog0 = "urn:xmpp:sec-label:catalog:0"
	NSCatalog1 = "urn:xmpp:sec-label:catalog:1"
)

// Features are the disco#info features of every entity that enforces labels.
var Features = []string{label.NS, label.NSCatalog}

// IsCatalog reports whether ns is a catalog request namespace.
func IsCatalog(ns string) bool {
	return ns == label.NSCatalog || ns == NSCatalog0 || ns == NSCatalog1
}

// CatalogItems returns the items of the catalog of policy p that grant
// passes, keeping the default mark only on a passing item.
func CatalogItems(p *label.Policy, grant func(*label.Label) bool) []label.CatalogItem {
	var out []label.CatalogItem
	for _, it := range p.Catalog {
		if it.Label == nil || grant(it.Label) {
			out = append(out, it)
		}
	}
	return out
}

// CatalogReply answers the catalog request st (whose payload is req) for
// target with items, in the form of the request's namespace.
func CatalogReply(st, req *wire.Element, target string, p *label.Policy, items []label.CatalogItem) (*wire.Element, error) {
	res := stanza.Result(st)
	ns := req.Space
	c := res.AddChild(wire.New("catalog", ns))
	c.SetAttr("to", target)
	c.SetAttr("name", p.Name)
	c.SetAttr("desc", "Labels of policy "+p.Name+" you may use here")
	c.SetAttr("restrict", "false")
	n := 0
	for _, it := range items {
		if it.Label == nil && ns != label.NSCatalog {
			continue // the flat forms cannot express "no label"
		}
		n++
	}
	c.SetAttr("size", strconv.Itoa(n))
	for _, it := range items {
		var sl *wire.Element
		if it.Label != nil {
			b, err := it.Label.Marshal()
			if err != nil {
				return nil, err
			}
			if sl, err = wire.ParseElement(string(b)); err != nil {
				return nil, err
			}
		}
		if ns == label.NSCatalog {
			item := c.AddChild(wire.New("item", ""))
			if it.Selector != "" {
				item.SetAttr("selector", it.Selector)
			}
			if it.Default {
				item.SetAttr("default", "true")
			}
			if sl != nil {
				item.AddChild(sl)
			}
			continue
		}
		if sl == nil {
			continue
		}
		if it.Selector != "" {
			sl.SetAttr("selector", it.Selector)
		}
		if it.Default {
			sl.SetAttr("default", "true")
		}
		c.AddChild(sl)
	}
	return res, nil
}
