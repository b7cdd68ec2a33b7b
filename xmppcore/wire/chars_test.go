package wire

import "testing"

func TestScanName(t *testing.T) {
	tests := []struct {
		in    string
		end   int // length of the Name found (0: none)
		colon int
		qname bool
	}{
		{"a", 1, -1, true},
		{"message>", 7, -1, true},
		{"stream:stream ", 13, 6, true},
		{"xml:lang=", 8, 3, true},
		{"a-b.c_d9 ", 8, -1, true},
		{"_a", 2, -1, true},
		{"1a", 0, -1, false},
		{"-a", 0, -1, false},
		{".a", 0, -1, false},
		{":a", 2, 0, false},
		{"a:", 2, 1, false},
		{"a::b", 4, 1, false},
		{"a:b:c", 5, 1, false},
		{"a:1", 3, 1, false},
		{"a:-b", 4, 1, false},
		{"a:\u00e9", 4, 1, true},
		{"\u00e9:a", 4, 2, true},
		{"a\u0300", 3, -1, true},     // combining mark: NameChar
		{"\u0300a", 0, -1, false},    // but not NameStartChar
		{"a:\u0300", 4, 1, false},    // nor a local part's first character
		{"a\u00b7b", 4, -1, true},    // middle dot
		{"a\u00d7b", 1, -1, true},    // multiplication sign ends the name
		{"\u3007x", 4, -1, true},     // ideographic zero
		{"\U00010000", 4, -1, true},  // supplementary plane
		{"\U000F0000", 0, -1, false}, // private use plane 15: not a name
		{"a\xff", 1, -1, true},       // invalid UTF-8 ends the name
		{"\xc3", 0, -1, false},       // truncated UTF-8
		{"a\uFFFE", 1, -1, true},     // non-character
		{"\uFDD0", 0, -1, false},     // in the gap between F900-FDCF and FDF0
		{"", 0, -1, false},
	}
	for _, tt := range tests {
		// A leading byte checks that offsets are relative to s, not i.
		end, colon, qname := scanName(" "+tt.in, 1)
		end--
		if colon >= 0 {
			colon--
		}
		if end != tt.end || tt.end > 0 && (colon != tt.colon || qname != tt.qname) {
			t.Errorf("scanName(%q) = %d, %d, %v; want %d, %d, %v", tt.in, end, colon, qname, tt.end, tt.colon, tt.qname)
		}
	}
}

func TestSkipPlain(t *testing.T) {
	s := "0123456789abcdef<xyz"
	if got := skipPlain(s, 0, '<', '&', '>'); got != 16 {
		t.Errorf("stopped at %d", got)
	}
	for _, special := range []string{"\x00", "\x1f", "\t", "\x7f\x80", "\xff", "<", "&", ">"} {
		s := "abcdefgh" + "abc" + special + "efghijkl"
		if got := skipPlain(s, 0, '<', '&', '>'); got != 8 {
			t.Errorf("%q: stopped at %d, want 8", special, got)
		}
	}
	if got := skipPlain("abcdefgh'bcdefgh", 0, '\'', '<', '&'); got != 8 {
		t.Errorf("quote: stopped at %d", got)
	}
}
