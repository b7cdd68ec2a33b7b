package sasl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxPlainField is the RFC 4616 limit on authzid, authcid and passwd.
const maxPlainField = 255

// plainServer implements RFC 4616 PLAIN against stored SCRAM keys.
type plainServer struct {
	lookup     Lookup
	state      state
	challenged bool
	username   string
	attempted  string
	authzid    string
}

func (p *plainServer) Username() string { return p.username }

func (p *plainServer) Attempted() string { return p.attempted }
func (p *plainServer) Authzid() string   { return p.authzid }

func (p *plainServer) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if p.state == stateDone {
		return nil, false, fail(ConditionMalformedRequest, errFinished)
	}
	if err := ctx.Err(); err != nil {
		p.state = stateDone
		return nil, false, fail(ConditionTemporaryAuthFailure, err)
	}
	if len(in) == 0 && !p.challenged {
		// RFC 6120 §6.4.2: no initial response; an empty challenge asks for it.
		p.challenged = true
		return nil, false, nil
	}
	p.state = stateDone
	if f := p.authenticate(ctx, in); f != nil {
		return nil, false, f
	}
	return nil, true, nil
}

func (p *plainServer) authenticate(ctx context.Context, in []byte) *Failure {
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 {
		return fail(ConditionMalformedRequest, errors.New("PLAIN: want authzid NUL authcid NUL passwd"))
	}
	for _, part := range parts {
		if len(part) > maxPlainField || !utf8.Valid(part) {
			return fail(ConditionMalformedRequest, errors.New("PLAIN: field too long or not UTF-8"))
		}
	}
	authzid, authcid, passwd := string(parts[0]), string(parts[1]), string(parts[2])
	if authcid == "" || passwd == "" {
		return fail(ConditionMalformedRequest, errors.New("PLAIN: empty authcid or passwd"))
	}

	// Every failure below costs one key derivation, so timing tells nothing about the account.
	user, why := normalizeUsername(authcid)
	var creds Credentials
	if why == nil {
		p.attempted = user
		var err error
		creds, err = p.lookup(ctx, user)
		switch {
		case err == nil:
		case errors.Is(err, ErrNoSuchUser):
			why = err
		default:
			return lookupFailure(err)
		}
	}
	if why != nil {
		// PLAIN never reveals the salt, so any name does; what matters is the derivation cost.
		creds = Credentials{SHA256: dummyKeys(sha256.Size, "SHA-256", authcid)}
	}
	ok, err := creds.verifyPlain(passwd)
	switch {
	case why != nil:
		return fail(ConditionNotAuthorized, fmt.Errorf("PLAIN: %w", why))
	case err != nil:
		return fail(ConditionNotAuthorized, fmt.Errorf("PLAIN: %w", err))
	case !ok:
		return fail(ConditionNotAuthorized, errors.New("PLAIN: wrong password"))
	}
	p.username, p.authzid = user, authzid
	return nil
}
