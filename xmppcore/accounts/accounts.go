// Package accounts creates, authenticates and removes user accounts over the store.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/sasl"
)

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 6

// ErrWeakPassword is returned for passwords shorter than MinPasswordLen.
var ErrWeakPassword = fmt.Errorf("accounts: password must have at least %d characters", MinPasswordLen)

// Manager manages accounts in one store; it is safe for concurrent use.
type Manager struct {
	st         store.Store
	iterations int
}

// New returns a Manager that derives SCRAM keys with the given iteration count.
func New(st store.Store, iterations int) *Manager {
	if iterations < 4096 {
		iterations = 4096
	}
	return &Manager{st: st, iterations: iterations}
}

func (m *Manager) derive(password string) (store.ScramKeys, store.ScramKeys, error) {
	if utf8.RuneCountInString(password) < MinPasswordLen {
		return store.ScramKeys{}, store.ScramKeys{}, ErrWeakPassword
	}
	c, err := sasl.DeriveCredentials(password, m.iterations)
	if err != nil {
		return store.ScramKeys{}, store.ScramKeys{}, fmt.Errorf("derive credentials: %w", err)
	}
	return store.ScramKeys(c.SHA1), store.ScramKeys(c.SHA256), nil
}

// Create adds an account for the bare JID user; store.ErrExists if it exists.
func (m *Manager) Create(ctx context.Context, user jid.JID, password string) error {
	if user.Local() == "" || !user.IsBare() {
		return fmt.Errorf("accounts: %q is not a bare JID with a localpart", user)
	}
	s1, s256, err := m.derive(password)
	if err != nil {
		return err
	}
	a := store.Account{JID: user.String(), SHA1: s1, SHA256: s256, Created: time.Now().UTC()}
	if err := m.st.CreateAccount(ctx, a); err != nil {
		return fmt.Errorf("create account %s: %w", user, err)
	}
	return nil
}

// SetPassword replaces the account's credentials.
func (m *Manager) SetPassword(ctx context.Context, user jid.JID, password string) error {
	s1, s256, err := m.derive(password)
	if err != nil {
		return err
	}
	if err := m.st.SetCredentials(ctx, user.String(), s1, s256); err != nil {
		return fmt.Errorf("set password of %s: %w", user, err)
	}
	return nil
}

// Delete removes the account and all its data.
func (m *Manager) Delete(ctx context.Context, user jid.JID) error {
	if err := m.st.DeleteAccount(ctx, user.String()); err != nil {
		return fmt.Errorf("delete account %s: %w", user, err)
	}
	return nil
}

// List returns the bare JIDs of the domain's accounts.
func (m *Manager) List(ctx context.Context, domain string) ([]string, error) {
	l, err := m.st.ListAccounts(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("list accounts of %s: %w", domain, err)
	}
	return l, nil
}

// Exists reports whether the bare JID has an account.
func (m *Manager) Exists(ctx context.Context, user jid.JID) (bool, error) {
	_, err := m.st.GetAccount(ctx, user.Bare().String())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// Lookup returns the SASL credential lookup for accounts of domain.
func (m *Manager) Lookup(domain string) sasl.Lookup {
	return func(ctx context.Context, username string) (sasl.Credentials, error) {
		u, err := jid.New(username, domain, "")
		if err != nil {
			return sasl.Credentials{}, sasl.ErrNoSuchUser
		}
		a, err := m.st.GetAccount(ctx, u.String())
		if errors.Is(err, store.ErrNotFound) {
			return sasl.Credentials{}, sasl.ErrNoSuchUser
		}
		if err != nil {
			return sasl.Credentials{}, fmt.Errorf("look up %s: %w", u, err)
		}
		return sasl.Credentials{SHA1: sasl.ScramKeys(a.SHA1), SHA256: sasl.ScramKeys(a.SHA256)}, nil
	}
}
