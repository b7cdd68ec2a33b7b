package ess

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// specVectors are the XEP-0258 and PROTOCOLS §1.4 examples.
var specVectors = []struct {
	b64  string
	want Label
}{
	{"MQYCAQQGASk=", Label{Policy: "1.1", HasClass: true, Class: 4}},
	{"MQYCAQMGASk", Label{Policy: "1.1", HasClass: true, Class: 3}},
	{"MQYCAQIGASk=", Label{Policy: "1.1", HasClass: true, Class: 2}},
	{"MRUCAgD9DA9BcXVhIChvYnNvbGV0ZSk=", Label{HasClass: true, Class: 253, PrivacyMark: "Aqua (obsolete)"}},
	{"MQoCAQQGBSsaAQMB", Label{Policy: "1.3.26.1.3.1", HasClass: true, Class: 4}},
	{"MRICAQQGBSsaAQMBDAZTRUNSRVQ=", Label{Policy: "1.3.26.1.3.1", HasClass: true, Class: 4, PrivacyMark: "SECRET"}},
}

func TestSpecVectors(t *testing.T) {
	for _, v := range specVectors {
		t.Run(v.b64, func(t *testing.T) {
			got, err := DecodeBase64(v.b64)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v.want) {
				t.Fatalf("got %+v, want %+v", got, v.want)
			}
			der, err := got.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := base64.RawStdEncoding.DecodeString(strings.TrimRight(v.b64, "="))
			if !bytes.Equal(der, raw) {
				t.Fatalf("Marshal = %x, want %x", der, raw)
			}
			b64, _ := got.Base64()
			if strings.TrimRight(b64, "=") != strings.TrimRight(v.b64, "=") || len(b64)%4 != 0 {
				t.Fatalf("Base64 = %q", b64)
			}
		})
	}
}

func TestDecodeBase64Whitespace(t *testing.T) {
	for _, s := range []string{
		"\n  MRICAQQGBSsa\n  AQMBDAZTRUNS\r\n\tRVQ=\n",
		"M R I C A Q Q G B S s a A Q M B D A Z T R U N S R V Q",
	} {
		got, err := DecodeBase64(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got.PrivacyMark != "SECRET" || got.Policy != "1.3.26.1.3.1" {
			t.Fatalf("%q: got %+v", s, got)
		}
	}
	for _, s := range []string{"MQYCAQQGASk===", "MQYC=AQQGASk", "MQYCAQQGASk*", ""} {
		if _, err := DecodeBase64(s); err == nil {
			t.Errorf("%q: decoded, want error", s)
		}
	}
}

func TestCategoryRoundTrip(t *testing.T) {
	const tag = "2.16.840.1.101.2.1.8.3.99.1"
	l := Label{
		Policy:        "1.3.26.1.3.1",
		HasClass:      true,
		Class:         5,
		PrivacyMark:   "NATO SECRET",
		PrintableMark: true,
		Categories: []Category{
			{Type: TypeRestrictive, TagName: tag, Values: []int{0, 7, 8, 300}},
			{Type: TypeEnumeratedPermissive, TagName: tag, Values: []int{1, 2, 127, 128, 65535}},
			{Type: TypePermissive, TagName: tag, Values: []int{3}},
			{Type: TypeInformative, TagName: tag, Values: []int{1, 9}, Bitmap: true},
			{Type: TypeInformative, TagName: tag, Values: []int{4}},
			{Type: TypeEnumeratedRestrictive, TagName: tag},
			{Type: "1.2.3.4", Raw: []byte{0x04, 0x02, 0xca, 0xfe}},
		},
	}
	der, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Categories) != len(l.Categories) {
		t.Fatalf("got %d categories", len(got.Categories))
	}
	// Decoding yields the DER order; compare as sets.
	for _, want := range l.Categories {
		found := false
		for _, c := range got.Categories {
			found = found || reflect.DeepEqual(c, want)
		}
		if !found {
			t.Errorf("category %+v lost; got %+v", want, got.Categories)
		}
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, der) {
		t.Fatalf("re-marshal differs (%v):\n%x\n%x", err, again, der)
	}
}

// t_ builds a hex TLV from a hex tag and hex contents, computing the length.
func t_(tag string, parts ...string) string {
	body, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		panic(err)
	}
	tb, _ := hex.DecodeString(tag)
	return hex.EncodeToString(appendTLV(nil, tb[0], body))
}

// long is t_ with a non-minimal long-form length, which BER allows.
func long(tag string, parts ...string) string {
	body := strings.Join(parts, "")
	return fmt.Sprintf("%s8200%02x%s", tag, len(body)/2, body)
}

const (
	oidPermissive = "60864801650201080302"
	oidEnumPerm   = "60864801650201080301"
	oidRestrict   = "60864801650201080300"
)

// TestCategoryEncoding pins the exact bytes of one category of each form.
func TestCategoryEncoding(t *testing.T) {
	for _, tc := range []struct {
		c   Category
		hex string
	}{
		// SEQUENCE{ [0] 2.16.840.1.101.2.1.8.3.2, [1] SEQUENCE{ OID 1.2, BIT STRING '101'B } }
		{Category{Type: TypePermissive, TagName: "1.2", Values: []int{0, 2}},
			"3017" + "800a" + oidPermissive + "a109" + "3007" + "06012a" + "0302" + "05a0"},
		// enumerated: SET OF INTEGER {1, 200}
		{Category{Type: TypeEnumeratedPermissive, TagName: "1.2", Values: []int{200, 1}},
			"301c" + "800a" + oidEnumPerm + "a10e" + "300c" + "06012a" + "3107" + "020101" + "020200c8"},
		// empty bitmap
		{Category{Type: TypeRestrictive, TagName: "1.2"},
			"3016" + "800a" + oidRestrict + "a108" + "3006" + "06012a" + "030100"},
		// bit 8 set: two octets, seven unused bits
		{Category{Type: TypeRestrictive, TagName: "1.2", Values: []int{8}},
			"3018" + "800a" + oidRestrict + "a10a" + "3008" + "06012a" + "0303" + "070080"},
		{Category{Type: "1.2.3", Raw: []byte{0x05, 0x00}},
			"3008" + "80022a03" + "a1020500"},
	} {
		got, err := tc.c.marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != tc.hex {
			t.Errorf("%+v:\n got %x\nwant %s", tc.c, got, tc.hex)
		}
	}
}

// TestLenientForms checks BER and tagging variants that real encoders emit.
func TestLenientForms(t *testing.T) {
	typ := t_("80", oidPermissive)
	tagSeq := t_("30", "06012a", "030205a0")
	want := Label{Policy: "1.1", Categories: []Category{{Type: TypePermissive, TagName: "1.2", Values: []int{0, 2}}}}
	label := func(cat ...string) string { return t_("31", "060129", t_("31", t_("30", cat...))) }
	for name, h := range map[string]string{
		"standard":          label(typ, t_("a1", tagSeq)),
		"members reordered": t_("31", t_("31", t_("30", typ, t_("a1", tagSeq))), "060129"),
		"long lengths":      long("31", "060129", long("31", long("30", typ, long("a1", tagSeq)))),
		"padding bits set":  label(typ, t_("a1", t_("30", "06012a", "030205a7"))),
		"explicit [0]":      label(t_("a0", t_("06", oidPermissive)), t_("a1", tagSeq)),
		"primitive [1]":     label(typ, t_("81", tagSeq)),
		"implicit [1]":      label(typ, t_("a1", "06012a", "030205a0")),
	} {
		b, _ := hex.DecodeString(h)
		got, err := Decode(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v", name, got)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	typ := t_("80", oidPermissive)
	for name, h := range map[string]string{
		"empty input":        "",
		"not a SET":          "3003020104",
		"empty SET":          "3100",
		"trailing data":      "3103020104" + "00",
		"truncated":          "3105020104",
		"indefinite length":  "3180020104" + "0000",
		"high tag":           "3104" + "1f2001" + "00",
		"class too big":      "3104020201" + "01",
		"negative class":     "3103" + "0201ff",
		"non-minimal int":    "3104" + "02020004",
		"repeated class":     "3106" + "020104020104",
		"repeated policy":    "3106" + "060129060129",
		"unknown member":     "3103" + "040100",
		"empty OID":          "3102" + "0600",
		"bad OID padding":    "3104" + "0602802a",
		"OID arc overflow":   t_("31", t_("06", "2a", "ffffffffffffffffff7f")),
		"empty pString":      "3102" + "1300",
		"bad pString":        "3103" + "130140",
		"bad UTF-8":          "3103" + "0c01ff",
		"empty categories":   "3102" + "3100",
		"category not seq":   "3104" + "31020500",
		"category no value":  t_("31", t_("31", t_("30", "80022a03"))),
		"category empty val": t_("31", t_("31", t_("30", "80022a03", "a100"))),
		"category trailing":  t_("31", t_("31", t_("30", "80022a03", "a1020500", "0500"))),
		"type not [0]":       t_("31", t_("31", t_("30", "06022a03", "a1020500"))),
		"known, OCTET STR":   t_("31", t_("31", t_("30", typ, t_("a1", t_("04", "06012a", "030205a0"))))),
		"wrong field type":   t_("31", t_("31", t_("30", typ, t_("a1", t_("30", "06012a", "3103020101"))))),
		"tag trailing":       t_("31", t_("31", t_("30", typ, t_("a1", t_("30", "06012a", "030205a0", "0500"))))),
		"bad padding count":  t_("31", t_("31", t_("30", typ, t_("a1", t_("30", "06012a", "030208a0"))))),
		"reserved length":    "31ff",
		"length overflow":    "3188ffffffffffffffff",
	} {
		b, _ := hex.DecodeString(h)
		if l, err := Decode(b); err == nil {
			t.Errorf("%s: decoded %+v, want error", name, l)
		} else if !strings.HasPrefix(err.Error(), "ess: ") {
			t.Errorf("%s: error %q lacks package prefix", name, err)
		}
	}
	if _, err := Decode(make([]byte, MaxSize+1)); err == nil {
		t.Error("oversized input decoded")
	}
}

func TestDecodeLimits(t *testing.T) {
	cat := Category{Type: TypeEnumeratedRestrictive, TagName: "1.2", Values: []int{1}}
	cats := make([]Category, MaxCategories)
	for i := range cats {
		cats[i] = cat
		cats[i].Values = []int{i}
	}
	if _, err := (Label{Categories: cats}).Marshal(); err != nil {
		t.Fatalf("64 categories: %v", err)
	}
	if _, err := (Label{Categories: append(cats, cat)}).Marshal(); err == nil {
		t.Fatal("65 categories marshalled")
	}
	vals := make([]int, MaxValues+1)
	for i := range vals {
		vals[i] = i
	}
	for _, typ := range []string{TypePermissive, TypeEnumeratedPermissive} {
		c := Category{Type: typ, TagName: "1.2", Values: vals}
		if _, err := (Label{Categories: []Category{c}}).Marshal(); err == nil {
			t.Fatalf("%s: 257 values marshalled", typ)
		}
		// Hand-build the oversized value to check the decoder's own limit.
		c.Values = vals[:MaxValues]
		der, err := (Label{Categories: []Category{c}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(der); err != nil {
			t.Fatalf("%s: 256 values: %v", typ, err)
		}
	}
	// A bitmap with 257 bits set.
	bits := appendBits(nil, vals)
	seq := appendTLV(appendTLV(nil, tagOID, []byte{0x2a}), tagBitString, bits)
	typ, _ := appendOID(nil, TypePermissive)
	body := appendTLV(appendTLV(nil, tagCtx0, typ), tagCtx1C, appendTLV(nil, tagSequence, seq))
	der := appendTLV(nil, tagSet, appendTLV(nil, tagSet, appendTLV(nil, tagSequence, body)))
	if _, err := Decode(der); err == nil || !strings.Contains(err.Error(), "bits set") {
		t.Fatalf("257 bits: %v", err)
	}
}

func TestMarshalErrors(t *testing.T) {
	ok := Category{Type: TypePermissive, TagName: "1.2"}
	for name, l := range map[string]Label{
		"empty":               {},
		"class range":         {HasClass: true, Class: 257},
		"class without flag":  {Class: 3, Policy: "1.1"},
		"bad policy":          {Policy: "1"},
		"policy arc 3":        {Policy: "3.1"},
		"policy leading 0":    {Policy: "1.02"},
		"policy arc 40":       {Policy: "1.40"},
		"long pString":        {PrivacyMark: strings.Repeat("A", 129), PrintableMark: true},
		"bad pString":         {PrivacyMark: "a&b", PrintableMark: true},
		"printable no mark":   {Policy: "1.1", PrintableMark: true},
		"bad UTF-8":           {PrivacyMark: "\xff"},
		"raw on known":        {Categories: []Category{{Type: TypePermissive, TagName: "1.2", Raw: []byte{5, 0}}}},
		"bitmap on enum":      {Categories: []Category{{Type: TypeEnumeratedPermissive, TagName: "1.2", Bitmap: true}}},
		"no tagName":          {Categories: []Category{{Type: TypePermissive}}},
		"negative value":      {Categories: []Category{{Type: TypePermissive, TagName: "1.2", Values: []int{-1}}}},
		"huge value":          {Categories: []Category{{Type: TypePermissive, TagName: "1.2", Values: []int{1 << 20}}}},
		"unknown with tag":    {Categories: []Category{{Type: "1.2", TagName: "1.2", Raw: []byte{5, 0}}}},
		"unknown without raw": {Categories: []Category{ok, {Type: "1.2"}}},
	} {
		if b, err := l.Marshal(); err == nil {
			t.Errorf("%s: marshalled %x, want error", name, b)
		}
	}
	// A 2.x OID with a large second arc, and the largest 64-bit arc.
	for _, oid := range []string{"2.999", "2.18446744073709551535", "1.39.18446744073709551615"} {
		l := Label{Policy: oid}
		b, err := l.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", oid, err)
		}
		if got, err := Decode(b); err != nil || got.Policy != oid {
			t.Fatalf("%s: got %q, %v", oid, got.Policy, err)
		}
	}
	if _, err := (Label{Policy: "2.18446744073709551536"}).Marshal(); err == nil {
		t.Fatal("2.(2^64-80) marshalled")
	}
}

func TestMarshalNormalisesValues(t *testing.T) {
	l := Label{Categories: []Category{{Type: TypeEnumeratedPermissive, TagName: "1.2", Values: []int{5, 1, 5}}}}
	b, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 5}; !reflect.DeepEqual(got.Categories[0].Values, want) {
		t.Fatalf("values %v, want %v", got.Categories[0].Values, want)
	}
	if !reflect.DeepEqual(l.Categories[0].Values, []int{5, 1, 5}) {
		t.Fatal("Marshal modified its receiver")
	}
}

func TestDecodeCopiesRaw(t *testing.T) {
	b, _ := hex.DecodeString("310c" + "310a" + "3008" + "80022a03" + "a1020500")
	l, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 0xff
	if l.Categories[0].Raw[1] != 0 {
		t.Fatal("Raw aliases the input")
	}
}
