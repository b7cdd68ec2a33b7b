package irc

import (
	"strconv"
	"strings"
)

// ISupport is what a server said about itself in RPL_ISUPPORT (005), with RFC defaults for what it
// did not say.
type ISupport struct {
	Tokens      map[string]string // every token as sent; a token without a value maps to ""
	CaseMapping CaseMapping
	NickLen     int
	ChanTypes   string
	PrefixModes string // "ov": the channel modes that give a nick a prefix, highest first
	PrefixChars string // "@+": their prefixes, in the same order
	LineLen     int    // bytes of a line's body with CRLF
	Network     string
}

// DefaultISupport is what a server that sends no 005 is assumed to support.
func DefaultISupport() ISupport {
	return ISupport{
		Tokens:      map[string]string{},
		CaseMapping: RFC1459,
		NickLen:     9,
		ChanTypes:   "#&",
		PrefixModes: "ov",
		PrefixChars: "@+",
		LineLen:     DefaultLineLen,
	}
}

// maxTokens bounds the ISUPPORT tokens kept: servers send a few dozen; a hostile one can't grow
// the map without end.
const maxTokens = 256

// Apply updates is with the tokens of one 005 line (the parameters between the nick and the
// trailing "are supported by this server"). A token "-NAME" withdraws NAME. Values that do not
// parse keep the previous value.
func (is *ISupport) Apply(tokens []string) {
	if is.Tokens == nil {
		is.Tokens = map[string]string{}
	}
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		if name, ok := strings.CutPrefix(tok, "-"); ok {
			delete(is.Tokens, name)
			is.reset(name)
			continue
		}
		name, value, _ := strings.Cut(tok, "=")
		value = unescapeISupport(value)
		if _, ok := is.Tokens[name]; !ok && len(is.Tokens) >= maxTokens {
			continue
		}
		is.Tokens[name] = value
		is.set(name, value)
	}
}

func (is *ISupport) set(name, value string) {
	switch name {
	case "CASEMAPPING":
		is.CaseMapping = ParseCaseMapping(value)
	case "NICKLEN", "MAXNICKLEN":
		if n, err := strconv.Atoi(value); err == nil && n > 0 && n <= 512 {
			is.NickLen = n
		}
	case "CHANTYPES":
		is.ChanTypes = value // may be empty: no channels
	case "PREFIX":
		if modes, chars, ok := parsePrefix(value); ok {
			is.PrefixModes, is.PrefixChars = modes, chars
		}
	case "LINELEN":
		if n, err := strconv.Atoi(value); err == nil && n >= DefaultLineLen {
			is.LineLen = min(n, MaxBody)
		}
	case "NETWORK":
		is.Network = value
	}
}

func (is *ISupport) reset(name string) {
	d := DefaultISupport()
	switch name {
	case "CASEMAPPING":
		is.CaseMapping = d.CaseMapping
	case "NICKLEN", "MAXNICKLEN":
		is.NickLen = d.NickLen
	case "CHANTYPES":
		is.ChanTypes = d.ChanTypes
	case "PREFIX":
		is.PrefixModes, is.PrefixChars = d.PrefixModes, d.PrefixChars
	case "LINELEN":
		is.LineLen = d.LineLen
	case "NETWORK":
		is.Network = ""
	}
}

// parsePrefix parses "(ov)@+" into "ov" and "@+"; an empty value means no prefixes.
func parsePrefix(v string) (modes, chars string, ok bool) {
	if v == "" {
		return "", "", true
	}
	if !strings.HasPrefix(v, "(") {
		return "", "", false
	}
	modes, chars, ok = strings.Cut(v[1:], ")")
	if !ok || len(modes) != len(chars) {
		return "", "", false
	}
	return modes, chars, true
}

// unescapeISupport decodes the \xHH escapes ISUPPORT values use for space, backslash and '='.
func unescapeISupport(v string) string {
	if !strings.Contains(v, `\x`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+4 <= len(v) && v[i+1] == 'x' {
			if n, err := strconv.ParseUint(v[i+2:i+4], 16, 8); err == nil && n != 0 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// IsChannel reports whether target names a channel on this server.
func (is *ISupport) IsChannel(target string) bool {
	return target != "" && strings.IndexByte(is.ChanTypes, target[0]) >= 0
}

// SplitPrefixes separates a NAMES entry such as "@+nick" (multi-prefix) into its prefix characters
// and the nick.
func (is *ISupport) SplitPrefixes(entry string) (prefixes, nick string) {
	i := 0
	for i < len(entry) && strings.IndexByte(is.PrefixChars, entry[i]) >= 0 {
		i++
	}
	return entry[:i], entry[i:]
}

// ModeForPrefix returns the channel mode ('o', 'v', ...) whose prefix is c, or 0.
func (is *ISupport) ModeForPrefix(c byte) byte {
	if i := strings.IndexByte(is.PrefixChars, c); i >= 0 {
		return is.PrefixModes[i]
	}
	return 0
}

// Clone returns a copy of is that shares nothing with it.
func (is ISupport) Clone() ISupport {
	t := make(map[string]string, len(is.Tokens))
	for k, v := range is.Tokens {
		t[k] = v
	}
	is.Tokens = t
	return is
}
