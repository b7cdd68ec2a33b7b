package config

import (
	"reflect"
	"regexp"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestKeyLines(t *testing.T) {
	src := "\ufeff# comment with [brackets] and key = value\n" + // 1
		`top = 1` + "\n" + // 2
		`s = """` + "\n" + // 3
		`[not.a.table]` + "\n" + // 4
		`fake = 1 \"""" ` + "\n" + // 5 (escaped quote, then the closing """ plus one content quote)
		`after = 'it''s'` + "\n" + // 6: a literal string followed by another (invalid TOML, scanner must not care)
		"\n" + // 7
		`[ a . "b.c" ]  # header with spaces and a quoted dotted segment` + "\n" + // 8
		`x.y = { p = 1,` + "\n" + // 9
		`  q = [ {r = 1},` + "\n" + // 10
		`        {r = 2} ] }` + "\n" + // 11
		`arr = [` + "\n" + // 12
		`  1, # one` + "\n" + // 13
		`  2,` + "\n" + // 14
		`]` + "\n" + // 15
		`[[t]]` + "\n" + // 16
		`k = 1` + "\n" + // 17
		`[[t.u]]` + "\n" + // 18
		`v = 1` + "\n" + // 19
		`[[t]]` + "\n" + // 20
		`k = 2` + "\n" + // 21
		`[t.w]` + "\n" + // 22
		`"q\u0075oted" = 1979-05-27 07:32:00Z` + "\n" + // 23
		`ml = '''` + "\n" + // 24
		`]]` + "\n" + // 25
		`'''` + "\n" + // 26
		`z = 1` + "\n" // 27
	got := keyLines(src)
	want := map[string]int{
		"top": 2, "s": 3, "after": 6,
		"a": 8, `a."b.c"`: 8,
		`a."b.c".x`: 9, `a."b.c".x.y`: 9, `a."b.c".x.y.p`: 9,
		`a."b.c".x.y.q`: 10, `a."b.c".x.y.q[0]`: 10, `a."b.c".x.y.q[0].r`: 10,
		`a."b.c".x.y.q[1]`: 11, `a."b.c".x.y.q[1].r`: 11,
		`a."b.c".arr`: 12, `a."b.c".arr[0]`: 13, `a."b.c".arr[1]`: 14,
		"t": 16, "t[0]": 16, "t[0].k": 17,
		"t[0].u": 18, "t[0].u[0]": 18, "t[0].u[0].v": 19,
		"t[1]": 20, "t[1].k": 21,
		"t[1].w": 22, "t[1].w.quoted": 23, "t[1].w.ml": 24, "t[1].w.z": 27,
	}
	if !reflect.DeepEqual(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: line %d, want %d", k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected key %s (line %d)", k, v)
			}
		}
	}
}

func TestUnescapeBasic(t *testing.T) {
	tests := map[string]string{
		`plain`:            "plain",
		`a\tb`:             "a\tb",
		`\"q\"`:            `"q"`,
		`\\`:               `\`,
		`\u00e9\U0001F600`: "é😀",
		`\x41\e`:           "A\x1b",
		`\q`:               `\q`, // invalid: kept literally
		`\u12`:             `\u12`,
		`end\`:             `end\`,
	}
	for in, want := range tests {
		if got := unescapeBasic(in); got != want {
			t.Errorf("unescapeBasic(%q) = %q, want %q", in, got, want)
		}
	}
}

// checkKeyLines verifies keyLines against the real parser: every key toml reports must have a line
// within the document. toml.MetaData.Keys carries no array indexes, so ours are dropped to compare.
func checkKeyLines(t *testing.T, src string) {
	t.Helper()
	var raw map[string]any
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return
	}
	lines := keyLines(src)
	n := countLines(src)
	plain := make(map[string]bool, len(lines))
	for k, l := range lines {
		if l < 1 || l > n {
			t.Errorf("key %s: line %d outside 1..%d", k, l, n)
		}
		plain[indexRE.ReplaceAllString(k, "")] = true
	}
	for _, k := range md.Keys() {
		if !plain[k.String()] {
			t.Errorf("key %s from toml not found by keyLines in %q", k, src)
		}
	}
}

var indexRE = regexp.MustCompile(`\[[0-9]+\]`)

func TestKeyLinesMatchParser(t *testing.T) {
	for _, src := range []string{
		"x = [{a=1},{b={c=2}}]\n[[t]]\nq=1\n[[t]]\nr.s=2\n[t.u]\nv=1\n",
		"'lit.key' = 1\n\"\" = 2\n[\"\".x]\ny = 3\n",
		"a = \"\"\"\nb = 1\"\"\"\nc = 2\n",
		"a = { b = { c = [ { d = 1 } ] } }\n",
	} {
		checkKeyLines(t, src)
	}
}
