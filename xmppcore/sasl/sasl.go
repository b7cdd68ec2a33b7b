// Package sasl implements the server side of SASL authentication for XMPP client streams (RFC 6120 §6).
package sasl

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/xdg-go/scram"
)

// Mechanism names, as advertised in <mechanisms/>.
const (
	SCRAMSHA256Plus = "SCRAM-SHA-256-PLUS"
	SCRAMSHA1Plus   = "SCRAM-SHA-1-PLUS"
	SCRAMSHA256     = "SCRAM-SHA-256"
	SCRAMSHA1       = "SCRAM-SHA-1"
	Plain           = "PLAIN"
)

// ChannelBindingTLSExporter is the only channel binding type offered (RFC 9266).
const ChannelBindingTLSExporter = "tls-exporter"

// SASL failure conditions of RFC 6120 §6.5.
const (
	ConditionAborted              = "aborted"
	ConditionAccountDisabled      = "account-disabled"
	ConditionCredentialsExpired   = "credentials-expired"
	ConditionEncryptionRequired   = "encryption-required"
	ConditionIncorrectEncoding    = "incorrect-encoding"
	ConditionInvalidAuthzid       = "invalid-authzid"
	ConditionInvalidMechanism     = "invalid-mechanism"
	ConditionMalformedRequest     = "malformed-request"
	ConditionMechanismTooWeak     = "mechanism-too-weak"
	ConditionNotAuthorized        = "not-authorized"
	ConditionTemporaryAuthFailure = "temporary-auth-failure"
)

// ErrNoSuchUser is returned (possibly wrapped) by a Lookup for an unknown account.
var ErrNoSuchUser = errors.New("sasl: no such user")

// Lookup returns the stored credentials of an account. username has already been normalised
// by this package exactly as a JID localpart (PRECIS UsernameCaseMapped plus the RFC 7622
// exclusions), so it equals jid.JID.Local() of the account and must be looked up verbatim.
//
// For an unknown account Lookup returns an error wrapping ErrNoSuchUser; the exchange then
// continues with dummy credentials and fails exactly like a wrong password. A *Failure error is
// sent to the client unchanged (mind that e.g. account-disabled before authentication reveals
// that the account exists). Any other error yields temporary-auth-failure.
type Lookup func(ctx context.Context, username string) (Credentials, error)

// Failure is a SASL failure carrying an RFC 6120 §6.5 condition. Condition and Text are meant
// for the <failure/> element; the wrapped cause (see Unwrap) is for logs only.
// ErrChannelBinding is wrapped by failures caused by the channel binding
// alone (a type we do not support, a downgrade, a mismatch), decided before
// the password is checked: they are no password guess.
var ErrChannelBinding = errors.New("channel binding refused")

// Failure is a SASL failure with an RFC 6120 §6.5 condition.
type Failure struct {
	Condition string
	Text      string
	err       error
}

func (f *Failure) Error() string {
	msg := "sasl: " + f.Condition
	if f.Text != "" {
		msg += ": " + f.Text
	}
	if f.err != nil {
		msg += ": " + f.err.Error()
	}
	return msg
}

// Unwrap returns the internal cause of the failure, if any.
func (f *Failure) Unwrap() error { return f.err }

func fail(condition string, cause error) *Failure {
	return &Failure{Condition: condition, err: cause}
}

// Config describes the connection a SASL exchange runs on.
type Config struct {
	TLS        *tls.ConnectionState // nil on a plain connection
	AllowPlain bool                 // offer PLAIN without TLS (tests only); PLAIN over TLS is always offered
	Lookup     Lookup
}

// Server runs one SASL exchange. It is not safe for concurrent use.
type Server interface {
	// Step takes the client's decoded response (the initial response may be nil or empty) and
	// returns the challenge, or with done=true the additional data to send with <success/>
	// (nil for none). Errors are always *Failure; after an error the exchange is over.
	Step(ctx context.Context, in []byte) (out []byte, done bool, err error)
	// Username is the authenticated localpart after success, normalised as a JID localpart.
	Username() string
	// Attempted is the normalised username the client tried, known even
	// when the exchange failed, so that failures can be counted per account.
	Attempted() string
	// Authzid is the authorization identity the client sent, verbatim, or "". The caller must
	// check it against the authenticated account, e.g. with CheckAuthzid, before binding.
	Authzid() string
}

// exporterBinding returns the RFC 9266 tls-exporter channel binding of cs. It is only defined
// for TLS 1.3: under TLS 1.2 the exporter is unsafe without extended master secret.
func exporterBinding(cs *tls.ConnectionState) (scram.ChannelBinding, bool) {
	if cs == nil || !cs.HandshakeComplete || cs.Version != tls.VersionTLS13 {
		return scram.ChannelBinding{}, false
	}
	cb, err := scram.NewTLSExporterBinding(cs)
	if err != nil || !cb.IsSupported() {
		return scram.ChannelBinding{}, false
	}
	return cb, true
}

func plainAllowed(cfg Config) bool {
	return cfg.AllowPlain || cfg.TLS != nil && cfg.TLS.HandshakeComplete
}

// Mechanisms returns the mechanisms to advertise on this connection, most preferred first.
func Mechanisms(cfg Config) []string {
	m := make([]string, 0, 5)
	if _, ok := exporterBinding(cfg.TLS); ok {
		m = append(m, SCRAMSHA256Plus, SCRAMSHA1Plus)
	}
	m = append(m, SCRAMSHA256, SCRAMSHA1)
	if plainAllowed(cfg) {
		m = append(m, Plain)
	}
	return m
}

// ChannelBindingTypes returns the channel binding types to advertise with XEP-0440:
// ["tls-exporter"] on a TLS 1.3 connection, otherwise nothing.
func ChannelBindingTypes(cfg Config) []string {
	if _, ok := exporterBinding(cfg.TLS); ok {
		return []string{ChannelBindingTLSExporter}
	}
	return nil
}

// NewServer starts an exchange for mech. It fails with invalid-mechanism for a mechanism that
// Mechanisms(cfg) does not offer, except PLAIN on an unencrypted connection, which fails with
// encryption-required. The error is always a *Failure.
func NewServer(mech string, cfg Config) (Server, error) {
	if cfg.Lookup == nil {
		return nil, fail(ConditionTemporaryAuthFailure, errors.New("sasl: new server: Config.Lookup is nil"))
	}
	cb, cbOK := exporterBinding(cfg.TLS)
	switch mech {
	case Plain:
		if !plainAllowed(cfg) {
			return nil, fail(ConditionEncryptionRequired, errors.New("PLAIN needs TLS"))
		}
		return &plainServer{lookup: cfg.Lookup}, nil
	case SCRAMSHA256, SCRAMSHA1:
		return newSCRAM(mech, false, cb, cfg.Lookup), nil
	case SCRAMSHA256Plus, SCRAMSHA1Plus:
		if cbOK {
			return newSCRAM(mech, true, cb, cfg.Lookup), nil
		}
	}
	return nil, fail(ConditionInvalidMechanism, fmt.Errorf("mechanism %.64q not offered", mech))
}

// DecodeResponse decodes the character data of an <auth/> or <response/> element. Per RFC 6120
// §6.4.2 no data means no response (nil) and "=" means an empty one. Bad base64 fails with
// incorrect-encoding.
func DecodeResponse(text string) ([]byte, error) {
	switch text {
	case "":
		return nil, nil
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(text)
	if err != nil {
		return nil, fail(ConditionIncorrectEncoding, fmt.Errorf("decode response: %w", err))
	}
	return b, nil
}

// CheckAuthzid enforces RFC 6120 §6.3.8 for client streams: an authzid must be empty or name
// the authenticated account's own bare JID username@domain. Otherwise it returns a *Failure
// with invalid-authzid.
func CheckAuthzid(authzid, username, domain string) error {
	if authzid == "" {
		return nil
	}
	want, err := jid.New(username, domain, "")
	if err != nil {
		return fail(ConditionInvalidAuthzid, fmt.Errorf("check authzid: %w", err))
	}
	got, err := jid.Parse(authzid)
	if err != nil {
		return fail(ConditionInvalidAuthzid, fmt.Errorf("check authzid: %w", err))
	}
	if got != want {
		return fail(ConditionInvalidAuthzid, errors.New("check authzid: not the authenticated account"))
	}
	return nil
}

// normalizeUsername prepares an authcid as a JID localpart so that Username() can always be
// combined with a domain; the jid package owns those rules, the domain here is a placeholder.
func normalizeUsername(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty username")
	}
	j, err := jid.New(s, "localhost", "")
	if err != nil {
		return "", fmt.Errorf("username: %w", err)
	}
	return j.Local(), nil
}

// maxMessageLen bounds every client message; the largest legitimate one (SCRAM client-first
// with a 3 KiB escaped authzid and username) is far below it.
const maxMessageLen = 8192

// lookupFailure turns an error from Lookup into the failure to send.
func lookupFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return fail(ConditionTemporaryAuthFailure, fmt.Errorf("lookup: %w", err))
}
