package sasl

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/xdg-go/scram"
)

type state int

const (
	stateStart state = iota // nothing received yet
	stateFinal              // server-first sent, waiting for client-final
	stateDone               // succeeded or failed; any further Step is an error
)

var errFinished = errors.New("exchange already finished")

// scramServer drives xdg-go/scram and adds what it leaves to the application: XMPP failure
// conditions, -PLUS policy, username normalisation and uniform handling of unknown users.
type scramServer struct {
	mech   string
	hash   scram.HashGeneratorFcn
	family string // "SHA-1" or "SHA-256"; separates the fake salts of the two hashes
	size   int
	plus   bool                 // the mechanism is a -PLUS variant
	cb     scram.ChannelBinding // this connection's binding; set iff -PLUS is advertised
	lookup Lookup
	nonce  scram.NonceGeneratorFcn // nil: the library's crypto/rand default; tests fix it

	state      state
	challenged bool // an empty challenge has been sent for a missing initial response
	conv       *scram.ServerConversation

	// Set while the library runs our credential callback, which has no context or error path.
	ctx       context.Context
	lookupErr error
	dummy     bool  // unknown or unusable account: the exchange must fail at the proof
	dummyWhy  error // why dummy is set, for the failure's cause

	user     string // normalised username once known
	username string // set on success only
	authzid  string
}

func newSCRAM(mech string, plus bool, cb scram.ChannelBinding, lookup Lookup) *scramServer {
	s := &scramServer{mech: mech, plus: plus, cb: cb, lookup: lookup}
	if strings.HasPrefix(mech, SCRAMSHA256) {
		s.hash, s.family, s.size = scram.SHA256, "SHA-256", sha256.Size
	} else {
		s.hash, s.family, s.size = scram.SHA1, "SHA-1", sha1.Size
	}
	return s
}

func (s *scramServer) Username() string { return s.username }

func (s *scramServer) Attempted() string { return s.user }
func (s *scramServer) Authzid() string   { return s.authzid }

func (s *scramServer) Step(ctx context.Context, in []byte) (out []byte, done bool, err error) {
	if s.state == stateDone {
		return nil, false, fail(ConditionMalformedRequest, errFinished)
	}
	if err := ctx.Err(); err != nil {
		s.state = stateDone
		return nil, false, fail(ConditionTemporaryAuthFailure, err)
	}
	if s.state == stateStart && len(in) == 0 && !s.challenged {
		// RFC 6120 §6.4.2: no initial response; an empty challenge asks for it.
		s.challenged = true
		return nil, false, nil
	}
	var f *Failure
	switch s.state {
	case stateStart:
		out, f = s.first(ctx, in)
		s.state = stateFinal
	case stateFinal:
		out, f = s.final(in)
		done = f == nil
		s.state = stateDone
	}
	if f != nil {
		s.state = stateDone
		return nil, false, f
	}
	return out, done, nil
}

// checkMessage applies the RFC 5802 rules shared by both client messages.
func checkMessage(in []byte) error {
	switch {
	case len(in) == 0:
		return errors.New("empty message")
	case len(in) > maxMessageLen:
		return fmt.Errorf("message of %d bytes exceeds %d", len(in), maxMessageLen)
	case !utf8.Valid(in):
		return errors.New("invalid UTF-8")
	case strings.IndexByte(string(in), 0) >= 0:
		return errors.New("NUL byte")
	}
	return nil
}

func (s *scramServer) first(ctx context.Context, in []byte) ([]byte, *Failure) {
	if err := checkMessage(in); err != nil {
		return nil, fail(ConditionMalformedRequest, fmt.Errorf("%s client-first: %w", s.mech, err))
	}
	msg := string(in)
	// gs2-header "," username "," nonce …: check what the library does not.
	fields := strings.SplitN(msg, ",", 3)
	if len(fields) != 3 {
		return nil, fail(ConditionMalformedRequest, fmt.Errorf("%s client-first: no gs2 header", s.mech))
	}
	if f := s.checkFlag(fields[0]); f != nil {
		return nil, f
	}
	bare := strings.SplitN(fields[2], ",", 3)
	if len(bare) < 2 || !strings.HasPrefix(bare[1], "r=") || !validNonce(bare[1][2:]) {
		return nil, fail(ConditionMalformedRequest, fmt.Errorf("%s client-first: missing or invalid nonce", s.mech))
	}

	srv, err := s.hash.NewServer(s.credentials)
	if err != nil {
		return nil, fail(ConditionTemporaryAuthFailure, fmt.Errorf("%s: %w", s.mech, err))
	}
	if s.nonce != nil {
		srv = srv.WithNonceGenerator(s.nonce)
	}
	switch {
	case s.plus:
		s.conv = srv.NewConversationWithChannelBindingRequired(s.cb)
	case s.cb.IsSupported():
		// -PLUS is advertised: the library then rejects the "y" flag (downgrade).
		s.conv = srv.NewConversationWithChannelBinding(s.cb)
	default:
		s.conv = srv.NewConversation()
	}

	s.ctx = ctx
	out, err := s.conv.Step(msg)
	s.ctx = nil
	switch {
	case s.lookupErr != nil:
		return nil, lookupFailure(s.lookupErr)
	case err != nil:
		return nil, fail(ConditionMalformedRequest, fmt.Errorf("%s client-first: %w", s.mech, err))
	}
	return []byte(out), nil
}

// checkFlag enforces the channel binding policy on the gs2-cbind-flag (RFC 5802 §6).
// Every violation is not-authorized: each is either a downgrade or a binding we cannot verify.
func (s *scramServer) checkFlag(flag string) *Failure {
	var why string
	switch {
	case flag == "n" && s.plus:
		why = "-PLUS mechanism without channel binding"
	case flag == "y" && s.plus:
		why = "-PLUS mechanism without channel binding"
	case flag == "y" && s.cb.IsSupported():
		why = "client saw no -PLUS mechanism but we offered one (downgrade)"
	case flag == "n" || flag == "y":
		return nil
	case !strings.HasPrefix(flag, "p="):
		return fail(ConditionMalformedRequest, fmt.Errorf("%s client-first: bad gs2 flag", s.mech))
	case !s.plus:
		why = "channel binding requested with a non-PLUS mechanism"
	case flag != "p="+ChannelBindingTLSExporter:
		why = fmt.Sprintf("unsupported channel binding type %.32q", flag[2:])
	default:
		return nil
	}
	return fail(ConditionNotAuthorized, fmt.Errorf("%s: %s: %w", s.mech, why, ErrChannelBinding))
}

// validNonce checks RFC 5802 "printable": ASCII 0x21–0x7E except ','.
func validNonce(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x21 || n[i] > 0x7e || n[i] == ',' {
			return false
		}
	}
	return true
}

// credentials is the library's lookup callback. Unknown and malformed usernames get stable fake
// keys so that they fail at the proof, like a wrong password, without an early tell-tale error.
func (s *scramServer) credentials(raw string) (scram.StoredCredentials, error) {
	user, err := normalizeUsername(raw)
	var keys ScramKeys
	key := raw // fake salts follow the normalised name, as a real account's salt would
	if err == nil {
		key = user
		s.user = user
		var c Credentials
		c, err = s.lookup(s.ctx, user)
		switch {
		case err == nil:
			if keys = c.SHA256; s.size == sha1.Size {
				keys = c.SHA1
			}
			if !keys.usable(s.size) {
				err = fmt.Errorf("account has no usable %s keys", s.family)
			}
		case errors.Is(err, ErrNoSuchUser):
		default:
			s.lookupErr = err
			return scram.StoredCredentials{}, err
		}
	}
	if err != nil {
		s.dummy, s.dummyWhy = true, err
		keys = dummyKeys(s.size, s.family, key)
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(keys.Salt), Iters: keys.Iterations},
		StoredKey:  keys.StoredKey,
		ServerKey:  keys.ServerKey,
	}, nil
}

func (s *scramServer) final(in []byte) ([]byte, *Failure) {
	if err := checkMessage(in); err != nil {
		return nil, fail(ConditionMalformedRequest, fmt.Errorf("%s client-final: %w", s.mech, err))
	}
	out, err := s.conv.Step(string(in))
	switch {
	case err != nil && out == "":
		// The library returns no server-error value only when it could not parse the message.
		return nil, fail(ConditionMalformedRequest, fmt.Errorf("%s client-final: %w", s.mech, err))
	case err != nil:
		// Keep only the RFC 5802 error value: the library's message can embed binding data.
		cause := fmt.Errorf("%s: %s", s.mech, out)
		if strings.Contains(out, "channel-binding") {
			cause = fmt.Errorf("%w: %w", cause, ErrChannelBinding)
		}
		if s.dummy {
			cause = fmt.Errorf("%w (%w)", cause, s.dummyWhy)
		}
		return nil, fail(ConditionNotAuthorized, cause)
	case s.dummy || !s.conv.Valid():
		// Unreachable with fake keys, but never let them authenticate.
		return nil, fail(ConditionNotAuthorized, fmt.Errorf("%s: %w", s.mech, s.dummyWhy))
	}
	s.username = s.user
	s.authzid = s.conv.AuthzID()
	return []byte(out), nil
}
