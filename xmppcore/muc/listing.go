package muc

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

// maxListing is the most rooms one disco#items answer lists: with more, a
// client pages through them (XEP-0059), and one without paging gets the
// first ones and an RSM set telling how many there are.
const maxListing = 500

// page selects a page of rooms (sorted by JID) for an RSM request rq (nil:
// the first maxPage). The returned set describes the page; it is nil when
// the client did not page and everything fitted.
func page(rooms []*roomInfo, rq *wire.Element, maxPage int) ([]*roomInfo, *wire.Element, error) {
	size := maxPage
	after, before, hasBefore := "", "", false
	if rq != nil {
		if m := rq.Child("max", ""); m != nil {
			n, err := strconv.Atoi(m.Text())
			if err != nil || n < 0 {
				return nil, nil, errors.New("RSM max must be a number")
			}
			size = min(n, maxPage)
		}
		after = rq.ChildText("after", "")
		if b := rq.Child("before", ""); b != nil {
			before, hasBefore = b.Text(), true
		}
		if rq.Child("index", "") != nil {
			return nil, nil, errors.New("RSM index is not supported")
		}
	}
	key := func(r *roomInfo) string { return r.jid.String() }
	lo, hi := 0, len(rooms)
	if after != "" {
		lo, _ = slices.BinarySearchFunc(rooms, after, func(r *roomInfo, k string) int { return strings.Compare(key(r), k) })
		if lo < len(rooms) && key(rooms[lo]) == after {
			lo++
		}
	}
	if before != "" {
		hi, _ = slices.BinarySearchFunc(rooms, before, func(r *roomInfo, k string) int { return strings.Compare(key(r), k) })
	}
	if hi < lo {
		hi = lo
	}
	first := lo
	if hasBefore {
		first = max(hi-size, lo) // the last page before the bound
	}
	last := min(first+size, hi)
	sel := rooms[first:last]
	if rq == nil && len(sel) == len(rooms) {
		return sel, nil, nil
	}
	set := wire.New("set", NSRSM)
	if len(sel) > 0 {
		set.AddChild(wire.New("first", "")).SetAttr("index", strconv.Itoa(first)).AddText(key(sel[0]))
		set.AddChild(wire.New("last", "")).AddText(key(sel[len(sel)-1]))
	}
	set.AddChild(wire.New("count", "")).AddText(strconv.Itoa(len(rooms)))
	return sel, set, nil
}
