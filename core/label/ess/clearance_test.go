package ess

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func TestClearanceRoundTrip(t *testing.T) {
	cat := Category{Type: TypePermissive, TagName: "1.3.26.1.3.1.9", Values: []int{1, 4}}
	for _, tc := range []struct {
		name string
		c    Clearance
		hex  string
	}{
		// classList {unclassified} is the DEFAULT and is omitted.
		{"default classes", Clearance{Policy: "1.1", Classes: []int{1}}, "3003060129"},
		{"no classes", Clearance{Policy: "1.1"}, "3006060129030100"},
		{"unclassified..secret", Clearance{Policy: "1.1", Classes: []int{1, 2, 3, 4}}, "3007060129030203" + "78"},
		{"with category", Clearance{Policy: "1.1", Classes: []int{0, 256}, Categories: []Category{cat}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := tc.c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if tc.hex != "" && hex.EncodeToString(der) != tc.hex {
				t.Fatalf("Marshal = %x, want %s", der, tc.hex)
			}
			got, err := DecodeClearance(der)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.c) {
				t.Fatalf("got %+v, want %+v", got, tc.c)
			}
		})
	}
}

func TestClearanceRFC3281Tags(t *testing.T) {
	// RFC 3281: policyId [0], classList [1], securityCategories [2], implicit.
	cat := t_("30", "80022a03", "a1020500")
	b, _ := hex.DecodeString(t_("30", "800129", "81020110", t_("a2", cat)))
	got, err := DecodeClearance(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Clearance{Policy: "1.1", Classes: []int{3}, Categories: []Category{{Type: "1.2.3", Raw: []byte{5, 0}}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	der, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	std, _ := hex.DecodeString(t_("30", "060129", "03020410", t_("31", cat)))
	if !bytes.Equal(der, std) {
		t.Fatalf("Marshal = %x, want %x", der, std)
	}
}

func TestClearanceErrors(t *testing.T) {
	for name, h := range map[string]string{
		"empty":          "",
		"not a SEQUENCE": "3103060129",
		"no policy":      "3000",
		"policy not OID": "3003020101",
		"class too high": t_("30", "060129", t_("03", "00", strings.Repeat("00", 32), "40")),
		"bad member":     "3006060129020101",
		"trailing":       "300b060129030100" + "31020500",
		"order":          t_("30", "060129", t_("31", t_("30", "80022a03", "a1020500")), "030100"),
		"data after":     "3003060129" + "00",
		"empty cats":     "3005060129" + "3100",
	} {
		b, _ := hex.DecodeString(h)
		if c, err := DecodeClearance(b); err == nil {
			t.Errorf("%s: decoded %+v, want error", name, c)
		}
	}
	for name, c := range map[string]Clearance{
		"no policy":    {Classes: []int{1}},
		"class 257":    {Policy: "1.1", Classes: []int{257}},
		"class -1":     {Policy: "1.1", Classes: []int{-1}},
		"bad category": {Policy: "1.1", Categories: []Category{{Type: "1.2"}}},
	} {
		if b, err := c.Marshal(); err == nil {
			t.Errorf("%s: marshalled %x, want error", name, b)
		}
	}
}
