// Package jid parses, validates and normalises XMPP addresses (JIDs) as defined in RFC 7622.
package jid

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/secure/precis"
)

const (
	// maxPartLen is the RFC 7622 limit for each part, in bytes, after normalisation.
	maxPartLen = 1023

	// maxRawPartLen bounds the input handed to PRECIS and IDNA so that hostile input cannot make
	// normalisation expensive. Normalisation can shrink a part (width and IDNA mappings, removed
	// code points), so this is looser than maxPartLen, but never unbounded.
	maxRawPartLen = 4 * maxPartLen

	// forbiddenLocal are the code points RFC 7622 §3.3.1 disallows in a localpart on top of
	// the PRECIS IdentifierClass (the space is already excluded by that class).
	forbiddenLocal = "\"&'/:<>@"
)

var (
	errEmptyLocal    = errors.New("empty localpart")
	errEmptyDomain   = errors.New("empty domainpart")
	errEmptyResource = errors.New("empty resourcepart")
	errTooLong       = errors.New("longer than 1023 bytes")
	errInvalidUTF8   = errors.New("invalid UTF-8")
	errForbidden     = errors.New(`contains one of " & ' / : < > @`)
	errSeparator     = errors.New("contains '@' or '/'")
	errEmptyLabel    = errors.New("empty label")
	errBadIP         = errors.New("invalid IPv6 literal")
)

// JID is a normalised XMPP address. JIDs are comparable with == (equal JIDs are equal values)
// and usable as map keys. The zero value is the empty JID, which IsZero reports.
type JID struct {
	// s is the canonical form "[local@]domain[/resource]". Keeping one string rather than three
	// makes String and Bare free and the struct smaller; the offsets are a pure function of s,
	// so == on JIDs is still exact.
	s      string
	dstart uint16 // start of the domainpart in s (0 without a localpart)
	dend   uint16 // end of the domainpart in s (len(s) without a resourcepart)
}

// Parse parses, validates and normalises s as described in RFC 7622: the localpart with the
// PRECIS UsernameCaseMapped profile, the resourcepart with OpaqueString, and the domainpart
// by stripping one trailing dot, lowercasing and converting IDNA A-labels to U-labels.
// IPv4 and bracketed IPv6 literals are accepted; IPv6 is put in canonical RFC 5952 form.
//
// Already-normalised ASCII input is recognised without calling PRECIS or IDNA and without
// allocating; the returned JID then shares memory with s.
func Parse(s string) (JID, error) {
	local, domain, resource, hasLocal, hasResource := split(s)
	if hasLocal && local == "" {
		return JID{}, fmt.Errorf("jid: parse: %w", errEmptyLocal)
	}
	if hasResource && resource == "" {
		return JID{}, fmt.Errorf("jid: parse: %w", errEmptyResource)
	}
	if isFastLocal(local) && isFastDomain(domain) && isFastResource(resource) {
		start := 0
		if hasLocal {
			start = len(local) + 1
		}
		return JID{s: s, dstart: uint16(start), dend: uint16(start + len(domain))}, nil
	}
	j, err := build(local, domain, resource)
	if err != nil {
		return JID{}, fmt.Errorf("jid: parse: %w", err)
	}
	return j, nil
}

// MustParse is like Parse but panics if s is not a valid JID. It is meant only for tests and
// for package-level constants built from literals; never call it on untrusted input.
func MustParse(s string) JID {
	j, err := Parse(s)
	if err != nil {
		panic(fmt.Sprintf("jid.MustParse(%s): %v", strconv.Quote(s), err))
	}
	return j
}

// New builds a JID from its parts, validating and normalising each as Parse does.
// An empty local or resource means the JID has none; the domain is required.
func New(local, domain, resource string) (JID, error) {
	j, err := build(local, domain, resource)
	if err != nil {
		return JID{}, fmt.Errorf("jid: new: %w", err)
	}
	return j, nil
}

// Local returns the localpart, or "" if there is none.
func (j JID) Local() string {
	if j.dstart == 0 {
		return ""
	}
	return j.s[:j.dstart-1]
}

// Domain returns the domainpart.
func (j JID) Domain() string { return j.s[j.dstart:j.dend] }

// Resource returns the resourcepart, or "" if there is none.
func (j JID) Resource() string {
	if int(j.dend) >= len(j.s) {
		return ""
	}
	return j.s[j.dend+1:]
}

// Bare returns j without its resourcepart.
func (j JID) Bare() JID {
	j.s = j.s[:j.dend]
	return j
}

// WithResource returns the bare form of j with resource r, normalised with OpaqueString.
// An empty r yields the bare JID.
func (j JID) WithResource(r string) (JID, error) {
	if j.IsZero() {
		return JID{}, fmt.Errorf("jid: with resource: %w", errEmptyDomain)
	}
	b := j.Bare()
	if r == "" {
		return b, nil
	}
	r, err := normResource(r)
	if err != nil {
		return JID{}, fmt.Errorf("jid: with resource: %w", err)
	}
	b.s = b.s + "/" + r
	return b, nil
}

// IsBare reports whether j has no resourcepart.
func (j JID) IsBare() bool { return int(j.dend) == len(j.s) }

// IsZero reports whether j is the zero (empty) JID.
func (j JID) IsZero() bool { return j.s == "" }

// String returns the canonical form "local@domain/resource" (omitting absent parts).
func (j JID) String() string { return j.s }

// split applies RFC 7622 §3.1: the resourcepart starts at the first '/', and the localpart ends
// at the first '@' before it. Separators are matched before any normalisation.
func split(s string) (local, domain, resource string, hasLocal, hasResource bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		resource, hasResource = s[i+1:], true
		s = s[:i]
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		local, hasLocal = s[:i], true
		s = s[i+1:]
	}
	return local, s, resource, hasLocal, hasResource
}

// build normalises the parts and joins them; it is the slow path of Parse and all of New.
func build(local, domain, resource string) (JID, error) {
	var err error
	if local != "" {
		if local, err = normLocal(local); err != nil {
			return JID{}, err
		}
	}
	if domain, err = normDomain(domain); err != nil {
		return JID{}, err
	}
	if resource != "" {
		if resource, err = normResource(resource); err != nil {
			return JID{}, err
		}
	}

	var b strings.Builder
	b.Grow(len(local) + len(domain) + len(resource) + 2)
	if local != "" {
		b.WriteString(local)
		b.WriteByte('@')
	}
	start := b.Len()
	b.WriteString(domain)
	end := b.Len()
	if resource != "" {
		b.WriteByte('/')
		b.WriteString(resource)
	}
	return JID{s: b.String(), dstart: uint16(start), dend: uint16(end)}, nil
}

func normLocal(s string) (string, error) {
	if !isFastLocal(s) {
		if len(s) > maxRawPartLen {
			return "", fmt.Errorf("localpart: %w", errTooLong)
		}
		if !utf8.ValidString(s) {
			return "", fmt.Errorf("localpart: %w", errInvalidUTF8)
		}
		out, err := precis.UsernameCaseMapped.String(s)
		if err != nil {
			return "", fmt.Errorf("localpart: %w", err)
		}
		s = out
	}
	switch {
	case s == "":
		return "", errEmptyLocal
	case len(s) > maxPartLen:
		return "", fmt.Errorf("localpart: %w", errTooLong)
	case strings.ContainsAny(s, forbiddenLocal):
		// Checked after PRECIS because width mapping can turn e.g. U+FF20 into '@'.
		return "", fmt.Errorf("localpart: %w", errForbidden)
	}
	return s, nil
}

func normResource(s string) (string, error) {
	if !isFastResource(s) {
		if len(s) > maxRawPartLen {
			return "", fmt.Errorf("resourcepart: %w", errTooLong)
		}
		if !utf8.ValidString(s) {
			return "", fmt.Errorf("resourcepart: %w", errInvalidUTF8)
		}
		out, err := precis.OpaqueString.String(s)
		if err != nil {
			return "", fmt.Errorf("resourcepart: %w", err)
		}
		s = out
	}
	switch {
	case s == "":
		return "", errEmptyResource
	case len(s) > maxPartLen:
		return "", fmt.Errorf("resourcepart: %w", errTooLong)
	}
	return s, nil
}

func normDomain(s string) (string, error) {
	if isFastDomain(s) {
		return s, nil
	}
	if len(s) > maxRawPartLen {
		return "", fmt.Errorf("domainpart: %w", errTooLong)
	}
	if strings.ContainsAny(s, "@/") {
		// Only reachable through New: a domain must never re-split differently.
		return "", fmt.Errorf("domainpart: %w", errSeparator)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("domainpart: %w", errInvalidUTF8)
	}
	// RFC 7622 §3.2: the trailing dot goes before any other canonicalisation.
	s = strings.TrimSuffix(s, ".")
	switch {
	case s == "":
		return "", errEmptyDomain
	case s[len(s)-1] == '.':
		return "", fmt.Errorf("domainpart: %w", errEmptyLabel)
	}
	if s[0] == '[' {
		return normIPv6(s)
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
		return s, nil
	}
	out, err := idna.Display.ToUnicode(s)
	if err != nil {
		return "", fmt.Errorf("domainpart: %w", err)
	}
	// IDNA maps other label separators (U+3002 …) to '.', which may reveal a trailing dot.
	out = strings.TrimSuffix(out, ".")
	switch {
	case out == "":
		return "", errEmptyDomain
	case len(out) > maxPartLen:
		return "", fmt.Errorf("domainpart: %w", errTooLong)
	case out[0] == '.' || out[len(out)-1] == '.' || strings.Contains(out, ".."):
		// The Display profile tolerates empty labels, but a JID domain must be a host name.
		return "", fmt.Errorf("domainpart: %w", errEmptyLabel)
	}
	return out, nil
}

// normIPv6 accepts "[v6]" and returns it in canonical form so that equal addresses compare equal.
func normIPv6(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != ']' {
		return "", fmt.Errorf("domainpart: %w", errBadIP)
	}
	ip, err := netip.ParseAddr(s[1 : len(s)-1])
	if err != nil || !ip.Is6() || ip.Zone() != "" {
		return "", fmt.Errorf("domainpart: %w", errBadIP)
	}
	return "[" + ip.String() + "]", nil
}

// Byte classes of the fast path: ASCII that each profile provably leaves unchanged
// (TestFastPathTable checks this against PRECIS for every byte).
const (
	fastLocal    = 1 << iota // printable, not upper case, not forbidden by RFC 7622
	fastResource             // printable including space
	fastDomain               // LDH and dot, lower case
)

var fastClass = func() (t [256]uint8) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] |= fastResource
		if c != ' ' && !(c >= 'A' && c <= 'Z') && !strings.ContainsRune(forbiddenLocal, rune(c)) {
			t[c] |= fastLocal
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			t[c] |= fastDomain
		}
	}
	return t
}()

func isFastLocal(s string) bool {
	if len(s) > maxPartLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if fastClass[s[i]]&fastLocal == 0 {
			return false
		}
	}
	return true
}

func isFastResource(s string) bool {
	if len(s) > maxPartLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if fastClass[s[i]]&fastResource == 0 {
			return false
		}
	}
	return true
}

// isFastDomain accepts LDH host names that IDNA would leave unchanged: non-empty labels with no
// leading or trailing hyphen and no "--" in positions 3-4 (which covers "xn--" A-labels).
func isFastDomain(s string) bool {
	if s == "" || len(s) > maxPartLen {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			if fastClass[c]&fastDomain == 0 {
				return false
			}
			if c != '.' {
				continue
			}
		}
		label := s[start:i]
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' ||
			len(label) >= 4 && label[2] == '-' && label[3] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}
