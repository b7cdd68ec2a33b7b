// Package authres reads Authentication-Results header fields (RFC 8601): which checks (SPF, DKIM, DMARC) an MTA ran on a message and what they found.
package authres

import (
	"errors"
	"fmt"
	"strings"
)

// Header is the name of the header field.
const Header = "Authentication-Results"

// MaxValue bounds a header field value that Parse reads.
const MaxValue = 8 << 10

// ErrMalformed is returned for a value that is not RFC 8601.
var ErrMalformed = errors.New("malformed Authentication-Results")

// Method is one check's result: "spf=pass smtp.mailfrom=example.com".
type Method struct {
	Name   string // lower case: "spf", "dkim", "dmarc", ...
	Result string // lower case: "pass", "fail", "none", ...
	// Props are the property values by "ptype.property" in lower case
	// ("smtp.mailfrom", "header.d", "header.i"); values as written.
	Props map[string]string
}

// Results is one Authentication-Results field.
type Results struct {
	AuthServID string // lower case
	Methods    []Method
}

// Parse reads a field value. Comments are dropped; "none" gives no methods.
func Parse(value string) (Results, error) {
	if len(value) > MaxValue {
		return Results{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxValue)
	}
	s, err := stripComments(value)
	if err != nil {
		return Results{}, err
	}
	parts, err := splitQuoted(s, ';')
	if err != nil {
		return Results{}, err
	}
	head := strings.Fields(parts[0])
	if len(head) == 0 || len(head) > 2 {
		return Results{}, fmt.Errorf("%w: no authserv-id", ErrMalformed)
	}
	r := Results{AuthServID: strings.ToLower(unquote(head[0]))}
	if r.AuthServID == "" {
		return Results{}, fmt.Errorf("%w: no authserv-id", ErrMalformed)
	}
	for _, p := range parts[1:] {
		words, err := splitQuoted(strings.TrimSpace(p), ' ', '\t', '\r', '\n')
		if err != nil {
			return Results{}, err
		}
		words = nonEmpty(words)
		if len(words) == 0 {
			continue // a trailing ";"
		}
		if len(words) == 1 && strings.EqualFold(words[0], "none") && len(parts) == 2 {
			break
		}
		name, result, ok := strings.Cut(words[0], "=")
		if !ok || name == "" || result == "" {
			return Results{}, fmt.Errorf("%w: %q is not method=result", ErrMalformed, words[0])
		}
		name, _, _ = strings.Cut(name, "/") // a method version
		m := Method{Name: strings.ToLower(strings.TrimSpace(name)), Result: strings.ToLower(unquote(result)), Props: map[string]string{}}
		if m.Name == "" || m.Result == "" {
			return Results{}, fmt.Errorf("%w: %q is not method=result", ErrMalformed, words[0])
		}
		for _, w := range words[1:] {
			k, v, ok := strings.Cut(w, "=")
			if !ok || k == "" {
				return Results{}, fmt.Errorf("%w: %q is not property=value", ErrMalformed, w)
			}
			m.Props[strings.ToLower(k)] = unquote(v)
		}
		r.Methods = append(r.Methods, m)
		if len(r.Methods) > 64 {
			return Results{}, fmt.Errorf("%w: more than 64 results", ErrMalformed)
		}
	}
	return r, nil
}

// Passed reports whether a method named name passed for domain: for
// "spf", smtp.mailfrom (or smtp.helo) must be in domain; for "dkim",
// header.d (or the domain of header.i); for others, header.from.
func (r Results) Passed(name, domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, m := range r.Methods {
		if m.Name != name || m.Result != "pass" {
			continue
		}
		var keys []string
		switch name {
		case "spf":
			keys = []string{"smtp.mailfrom", "smtp.helo"}
		case "dkim":
			keys = []string{"header.d", "header.i"}
		default:
			keys = []string{"header.from"}
		}
		for _, k := range keys {
			v, ok := m.Props[k]
			if !ok {
				continue
			}
			if at := strings.LastIndexByte(v, '@'); at >= 0 {
				v = v[at+1:]
			}
			if strings.ToLower(strings.TrimSuffix(v, ".")) == domain {
				return true
			}
			break // the first property present decides
		}
	}
	return false
}

// stripComments removes RFC 5322 comments, which nest, outside quoted strings.
func stripComments(s string) (string, error) {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			if i+1 < len(s) {
				if depth == 0 {
					b.WriteByte(c)
					b.WriteByte(s[i+1])
				}
				i++
			}
			continue
		case depth == 0 && c == '"':
			quoted = !quoted
		case !quoted && c == '(':
			depth++
			if depth > 16 {
				return "", fmt.Errorf("%w: comments nested too deep", ErrMalformed)
			}
			continue
		case !quoted && c == ')':
			if depth == 0 {
				return "", fmt.Errorf("%w: unbalanced ')'", ErrMalformed)
			}
			depth--
			b.WriteByte(' ')
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	if depth != 0 || quoted {
		return "", fmt.Errorf("%w: unterminated comment or quoted string", ErrMalformed)
	}
	return b.String(), nil
}

// splitQuoted splits s at any of seps outside quoted strings.
func splitQuoted(s string, seps ...byte) ([]string, error) {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && strings.IndexByte(string(seps), c) >= 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, fmt.Errorf("%w: unterminated quoted string", ErrMalformed)
	}
	return append(out, s[start:]), nil
}

func nonEmpty(ws []string) []string {
	out := ws[:0]
	for _, w := range ws {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		return b.String()
	}
	return s
}
