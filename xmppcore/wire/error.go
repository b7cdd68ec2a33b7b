package wire

import "fmt"

// Error is a stream-level parse failure; Condition is the RFC 6120 stream error condition to send.
type Error struct{ Condition, Text string }

// Error formats the condition and the explanation.
func (e *Error) Error() string {
	return "wire: " + e.Condition + ": " + e.Text
}

// Stream error conditions (RFC 6120 §4.9.3) the decoder reports.
const (
	condNotWellFormed       = "not-well-formed"
	condRestrictedXML       = "restricted-xml"
	condPolicyViolation     = "policy-violation"
	condInvalidNamespace    = "invalid-namespace"
	condUnsupportedEncoding = "unsupported-encoding"
)

// Texts of not-well-formed errors that encoding/xml does not detect; the
// differential fuzz test recognises them by prefix, so keep them stable.
const (
	msgUndeclaredPrefix = "undeclared namespace prefix"
	msgDuplicateAttr    = "duplicate attribute"
	msgQName            = "invalid qualified name"
	msgReservedNS       = "reserved namespace misused"
	msgEmptyNSDecl      = "empty namespace declaration"
	msgAttrSpace        = "missing whitespace before attribute"
	msgSurrogateRef     = "character reference to a surrogate"
	msgStreamText       = "character data at stream level"
)

func notWellFormed(format string, args ...any) *Error {
	return &Error{Condition: condNotWellFormed, Text: fmt.Sprintf(format, args...)}
}

func restricted(what string) *Error {
	return &Error{Condition: condRestrictedXML, Text: what + " not allowed in XMPP"}
}

func policy(format string, args ...any) *Error {
	return &Error{Condition: condPolicyViolation, Text: fmt.Sprintf(format, args...)}
}

// short bounds peer-controlled text quoted in error messages.
func short(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
