package irc

import (
	"slices"
	"strings"
	"testing"
)

func TestChannelModes(t *testing.T) {
	insp := DefaultISupport()
	insp.Apply([]string{"PREFIX=(qaohv)~&@%+", "CHANMODES=IXbegw,k,FHJLfjl,ABCDKMNOPQRSTcimnprstuz"})
	for _, tc := range []struct {
		name  string
		is    ISupport
		modes string
		args  []string
		want  []ModeChange
	}{
		{"op and voice", DefaultISupport(), "+ov", []string{"alice", "bob"},
			[]ModeChange{{true, 'o', "alice"}, {true, 'v', "bob"}}},
		{"mixed signs", DefaultISupport(), "+m-o+b", []string{"alice", "*!*@x"},
			[]ModeChange{{true, 'm', ""}, {false, 'o', "alice"}, {true, 'b', "*!*@x"}}},
		{"limit set takes an argument, unset does not", DefaultISupport(), "+l-l+v", []string{"10", "bob"},
			[]ModeChange{{true, 'l', "10"}, {false, 'l', ""}, {true, 'v', "bob"}}},
		{"key both ways", DefaultISupport(), "-k+t", []string{"secret"},
			[]ModeChange{{false, 'k', "secret"}, {true, 't', ""}}},
		{"server's prefixes", insp, "+qh-a", []string{"a", "b", "c"},
			[]ModeChange{{true, 'q', "a"}, {true, 'h', "b"}, {false, 'a', "c"}}},
		{"truncated", DefaultISupport(), "+oo", []string{"alice"}, []ModeChange{{true, 'o', "alice"}}},
		{"no sign means set", DefaultISupport(), "m", nil, []ModeChange{{true, 'm', ""}}},
	} {
		if got := tc.is.ChannelModes(tc.modes, tc.args); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q %q: got %+v, want %+v", tc.name, tc.modes, tc.args, got, tc.want)
		}
	}
}

// FuzzChannelModes: any MODE line yields a bounded list whose arguments are the line's, in order.
func FuzzChannelModes(f *testing.F) {
	f.Add("+ov-m", "alice bob", "beI,k,l,imnpst")
	f.Add("+l-l", "10", "")
	f.Fuzz(func(t *testing.T, modes, args, chanModes string) {
		is := DefaultISupport()
		is.Apply([]string{"CHANMODES=" + chanModes})
		a := strings.Fields(args)
		got := is.ChannelModes(modes, a)
		if len(got) > maxModeChanges || len(got) > len(modes) {
			t.Fatalf("%d changes from %q", len(got), modes)
		}
		next := 0
		for _, c := range got {
			if c.Arg == "" {
				continue
			}
			if next >= len(a) || a[next] != c.Arg {
				t.Fatalf("argument %q out of order in %+v from %q", c.Arg, got, a)
			}
			next++
		}
	})
}
