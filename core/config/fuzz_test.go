package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func countLines(s string) int { return strings.Count(s, "\n") + 1 }

// FuzzParse checks that Parse never panics, that every problem is an *Error inside the file,
// and that whatever it accepts validates. Run with: go test -fuzz=FuzzParse -fuzztime=20s ./core/config
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../../aldis.toml"); err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"", "[c2s]\nlisen = 1\n", "c2s = { listen = [\"a:1\", 2] }\n", "[[c2s]]\n[[c2s]]\n",
		"[server]\ndomain = \"Example..com\"\nshutdown_timeout = \"10\"\n",
		"[c2s]\nallow_plain_without_tls = true\nmax_stanza_size = 1048576\n[tls]\nkey_file = \"k\"\n",
		"a.\"b\\u0063\".'d' = '''\n[x]\n'''\n[[t]]\n[t.u]\n",
		"x = [\n{a=1},\n{b=[1,2]}]\n", "\ufeff[admin]\nlisten = \"[::1]:0\"\n",
		"[[t]]\nk = 1\n[[t.u]]\nv = \"\"\"\n[x]\\\"\"\"\"\n[[t]]\n[t.w]\n\"q\\u0075\" = 1979-05-27 07:32:00Z\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		checkKeyLines(t, string(data))
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("Parse error %v (%T) is not a non-empty Errors", err, err)
		}
		n := countLines(string(data))
		for _, e := range errs {
			if e.File != "f.toml" || e.Line < 1 || e.Line > n || e.Msg == "" {
				t.Errorf("bad position or message: %+v (file has %d lines)", e, n)
			}
		}
	})
}
