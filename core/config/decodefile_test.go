package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type testMap struct {
	Title string        `toml:"title"`
	Every time.Duration `toml:"every"`
	Items []testItem    `toml:"item"`
}

type testItem struct {
	Name string `toml:"name"`
	N    int    `toml:"n"`
}

func (m *testMap) Check() []Problem {
	var out []Problem
	for i, it := range m.Items {
		if it.N < 0 {
			out = append(out, Problem{Key: indexKey("item", i) + ".n", Msg: "must not be negative"})
		}
	}
	return out
}

func TestDecodeFile(t *testing.T) {
	m := testMap{Title: "default", Every: time.Second}
	err := DecodeFile("m.toml", []byte("every = \"5s\"\n[[item]]\nname = \"a\"\nn = 1\n"), &m)
	if err != nil || m.Title != "default" || m.Every != 5*time.Second || len(m.Items) != 1 || m.Items[0].Name != "a" {
		t.Fatalf("%v %+v", err, m)
	}
	src := "title = 3\n[[item]]\nname = \"a\"\nn = -1\n[[item]]\nbogus = 1\nn = \"x\"\n"
	err = DecodeFile("m.toml", []byte(src), &testMap{})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		"m.toml:1: title: must be a string, not an integer",
		"m.toml:4: item[0].n: must not be negative",
		"m.toml:6: item[1].bogus: unknown key",
		"m.toml:7: item[1].n: must be an integer, not a string",
	}
	if got := strings.Split(errs.Error(), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("errors:\n%s\nwant:\n%s", errs, strings.Join(want, "\n"))
	}
	if err := DecodeFile("m.toml", []byte("x = ["), &testMap{}); err == nil || !strings.HasPrefix(err.Error(), "m.toml:1") {
		t.Fatalf("syntax error: %v", err)
	}
	if err := DecodeFile("m.toml", nil, testMap{}); err == nil {
		t.Fatal("a non-pointer destination was accepted")
	}
	loc := Locate("m.toml", []byte(src), []Problem{{Key: "item[1].n", Msg: "later"}, {Key: "nowhere", Msg: "default"}})
	if loc[0].Line != 0 || loc[1].Line != 7 {
		t.Fatalf("Locate: %v", loc)
	}
}

func TestLocateMissingKeyUsesItsTable(t *testing.T) {
	src := "title = \"t\"\n\n[[item]]\nname = \"a\"\n"
	errs := Locate("m.toml", []byte(src), []Problem{{Key: "item[0].n", Msg: "missing"}})
	if errs[0].Line != 3 || errs[0].Key != "item[0].n" {
		t.Fatalf("got %v", errs)
	}
}
