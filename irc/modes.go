package irc

import "strings"

// ModeChange is one channel mode set (+) or unset (-), with its argument when the mode takes one.
type ModeChange struct {
	Set  bool
	Mode byte
	Arg  string
}

// defaultChanModes is CHANMODES for a server that does not send it: RFC 2811's list modes (b, e,
// I), the key (k), the limit (l), and modes without arguments.
const defaultChanModes = "beI,k,l,imnpst"

// maxModeChanges bounds the changes one MODE line yields (servers send at most a few dozen).
const maxModeChanges = 64

// ChannelModes splits a channel MODE's mode string ("+ov-m") and arguments into changes. Which
// modes take an argument comes from PREFIX (always) and CHANMODES (types A and B always, type C
// only when set, type D never); an unknown mode is taken to have none. A mode missing its
// argument (a truncated line) ends the list.
func (is *ISupport) ChannelModes(modes string, args []string) []ModeChange {
	cm, ok := is.Tokens["CHANMODES"]
	if !ok {
		cm = defaultChanModes
	}
	types := strings.SplitN(cm, ",", 4)
	takesArg := func(m byte, set bool) bool {
		switch {
		case strings.IndexByte(is.PrefixModes, m) >= 0:
			return true
		case len(types) > 0 && strings.IndexByte(types[0], m) >= 0,
			len(types) > 1 && strings.IndexByte(types[1], m) >= 0:
			return true
		case len(types) > 2 && strings.IndexByte(types[2], m) >= 0:
			return set
		}
		return false
	}
	var out []ModeChange
	set := true
	for i := 0; i < len(modes) && len(out) < maxModeChanges; i++ {
		switch m := modes[i]; m {
		case '+':
			set = true
		case '-':
			set = false
		default:
			c := ModeChange{Set: set, Mode: m}
			if takesArg(m, set) {
				if len(args) == 0 {
					return out
				}
				c.Arg, args = args[0], args[1:]
			}
			out = append(out, c)
		}
	}
	return out
}
