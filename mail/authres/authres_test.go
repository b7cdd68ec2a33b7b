package authres

import (
	"testing"
)

func TestParse(t *testing.T) {
	r, err := Parse("MX.example.org 1; spf=pass (sender SPF authorized) smtp.mailfrom=partner.example;\r\n" +
		"\tdkim=pass (2048-bit key) header.d=Partner.Example header.s=sel header.b=\"abc;def\"; dmarc=fail header.from=partner.example")
	if err != nil {
		t.Fatal(err)
	}
	if r.AuthServID != "mx.example.org" || len(r.Methods) != 3 {
		t.Fatalf("%+v", r)
	}
	if r.Methods[1].Props["header.b"] != "abc;def" {
		t.Errorf("quoted value %q", r.Methods[1].Props["header.b"])
	}
	for _, c := range []struct {
		name, domain string
		want         bool
	}{
		{"spf", "partner.example", true}, {"spf", "other.example", false},
		{"dkim", "partner.example", true}, {"dkim", "PARTNER.example.", true},
		{"dmarc", "partner.example", false},
	} {
		if got := r.Passed(c.name, c.domain); got != c.want {
			t.Errorf("Passed(%s, %s) = %v", c.name, c.domain, got)
		}
	}
	r, err = Parse("mx.example.org; dkim=pass header.i=@sub.example; spf=pass smtp.mailfrom=alice@sub.example")
	if err != nil || !r.Passed("dkim", "sub.example") || !r.Passed("spf", "sub.example") {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = Parse("mx.example.org; none")
	if err != nil || len(r.Methods) != 0 {
		t.Fatalf("none: %+v %v", r, err)
	}
	for _, bad := range []string{"", "; spf=pass", "mx; spf", "mx; spf=pass smtp.mailfrom", "mx (unterminated; spf=pass", "mx; spf=\"pass", "a b c; spf=pass"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("mx.example.org 1; spf=pass smtp.mailfrom=a.example; dkim=pass header.d=a.example (c (nested)) header.b=\"x\"")
	f.Add("mx; none")
	f.Add("mx; dkim/1=pass header.i=\"@a\\\"b\"")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if r.AuthServID == "" {
			t.Fatal("accepted without an authserv-id")
		}
		for _, m := range r.Methods {
			if m.Name == "" || m.Result == "" {
				t.Fatalf("empty method %+v", m)
			}
			_ = r.Passed(m.Name, "a.example")
		}
	})
}
