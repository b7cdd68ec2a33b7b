// Package identity gives every principal (user, room, peer, bridge) its effective clearance and default label.
//
// Users' clearances are expressions (see core/label) kept in the store and
// set with `aldis user clearance`; peers and bridges get theirs from the
// operators' maps when those are loaded (Register). A principal with none
// of its own has the governing policy's default: a nil clearance, which is
// denied everything labelled, when the policy sets none.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/store"
)

// Store keeps clearance expressions per principal; core/store.Store is one.
type Store interface {
	Clearance(ctx context.Context, principal string) (string, error)
	SetClearance(ctx context.Context, principal, expr string) error
}

// Principal is what a registered peer or bridge is cleared for and the
// label its unlabelled traffic gets.
type Principal struct {
	Clearance *label.Clearance
	Label     *label.Label // nil: the governing policy's default label
}

// Directory answers "what is X cleared for". It is safe for concurrent use.
type Directory struct {
	set   atomic.Pointer[label.Set]
	store Store
	log   *slog.Logger
	ttl   time.Duration

	mu     sync.Mutex
	users  map[string]cachedUser
	static map[string]Principal
	wild   bool // some static name is a wildcard ("peer:*.example.mil")
}

type cachedUser struct {
	c    *label.Clearance
	set  *label.Set // the policies c was read under: a reload invalidates it
	when time.Time
}

// maxCached bounds the user cache; it is emptied when full, which only
// costs store reads.
const maxCached = 100000

// New builds a directory over a policy set. ttl is how long a user's
// clearance is trusted before it is read again, so a change made with
// `aldis user clearance` on a running server applies within ttl.
func New(set *label.Set, st Store, log *slog.Logger, ttl time.Duration) *Directory {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Directory{store: st, log: log, ttl: ttl, users: map[string]cachedUser{}, static: map[string]Principal{}}
	d.set.Store(set)
	return d
}

// Policies is the directory's policy set.
func (d *Directory) Policies() *label.Set { return d.set.Load() }

// Spec is a registered principal's clearance and default label as
// expressions, for Replace.
type Spec struct{ Clearance, Label string }

// Replace switches to a new policy set (a reload) with the registered
// principals given afresh. Nothing changes unless every expression fits
// the new set. Cached user clearances are dropped.
func (d *Directory) Replace(set *label.Set, principals map[string]Spec) error {
	next := &Directory{static: map[string]Principal{}}
	next.set.Store(set)
	static := map[string]Principal{}
	for name, s := range principals {
		if err := next.Register(name, s.Clearance, s.Label); err != nil {
			return err
		}
		static[name] = next.static[name]
	}
	d.mu.Lock()
	d.set.Store(set)
	d.static = static
	clear(d.users)
	d.mu.Unlock()
	return nil
}

// User returns the effective clearance of a local user (bare JID): their
// own, else the governing policy's default, else nil. A stored expression
// that no longer parses under the policy gives nil (fail closed) and is
// logged.
func (d *Directory) User(ctx context.Context, bare string) *label.Clearance {
	now := time.Now()
	d.mu.Lock()
	cu, ok := d.users[bare]
	d.mu.Unlock()
	set := d.Policies()
	if ok && cu.set == set && now.Sub(cu.when) < d.ttl {
		return cu.c
	}
	var c *label.Clearance
	if set != nil && set.Governing != nil {
		c = set.Governing.DefaultClearance
	}
	expr, err := d.store.Clearance(ctx, bare)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		// Unknown is not "default": deny until the store answers.
		d.log.Error("read clearance", "user", bare, "err", err)
		return nil
	default:
		if c, err = set.ParseClearance(expr); err != nil {
			d.log.Error("stored clearance does not fit the policy; user is cleared for nothing", "user", bare, "clearance", expr, "err", err)
			c = nil
		}
	}
	d.mu.Lock()
	if len(d.users) >= maxCached {
		clear(d.users)
	}
	d.users[bare] = cachedUser{c: c, set: set, when: now}
	d.mu.Unlock()
	return c
}

func (d *Directory) governingDefault() *label.Clearance {
	set := d.Policies()
	if set == nil || set.Governing == nil {
		return nil
	}
	return set.Governing.DefaultClearance
}

// SetUser stores a user's clearance expression after checking it against
// the policy; "" removes it, so the default applies.
func (d *Directory) SetUser(ctx context.Context, bare, expr string) error {
	expr = strings.TrimSpace(expr)
	if expr != "" {
		if _, err := d.Policies().ParseClearance(expr); err != nil {
			return fmt.Errorf("clearance %q: %w", expr, err)
		}
	}
	if err := d.store.SetClearance(ctx, bare, expr); err != nil {
		return err
	}
	d.Forget(bare)
	return nil
}

// Forget drops a cached user clearance so the next lookup reads the store.
func (d *Directory) Forget(bare string) {
	d.mu.Lock()
	delete(d.users, bare)
	d.mu.Unlock()
}

// Register gives a non-user principal ("peer:example.net", a bridge link)
// its clearance and default label from expressions; an empty expression
// means the governing policy's default. A name whose domain part starts
// with "*." ("peer:*.example.mil") stands for every subdomain of that
// domain that has no entry of its own.
func (d *Directory) Register(name, clearance, defaultLabel string) error {
	p := Principal{Clearance: d.governingDefault()}
	var err error
	if clearance != "" {
		if p.Clearance, err = d.Policies().ParseClearance(clearance); err != nil {
			return fmt.Errorf("%s: clearance: %w", name, err)
		}
	}
	if defaultLabel != "" {
		if p.Label, err = d.Policies().ParseLabel(defaultLabel); err != nil {
			return fmt.Errorf("%s: label: %w", name, err)
		}
	}
	d.mu.Lock()
	d.static[name] = p
	if strings.Contains(name, ":*.") {
		d.wild = true
	}
	d.mu.Unlock()
	return nil
}

// Lookup returns a registered principal. An unregistered one has the
// governing default clearance and label.
func (d *Directory) Lookup(name string) Principal {
	d.mu.Lock()
	p, ok := d.static[name]
	if !ok && d.wild {
		p, ok = d.wildcard(name)
	}
	d.mu.Unlock()
	if ok {
		return p
	}
	return Principal{Clearance: d.governingDefault()}
}

// wildcard finds the longest wildcard entry covering name
// ("peer:a.b.example" is covered by "peer:*.b.example", then
// "peer:*.example"). Called with d.mu held.
func (d *Directory) wildcard(name string) (Principal, bool) {
	kind, domain, ok := strings.Cut(name, ":")
	if !ok {
		return Principal{}, false
	}
	for {
		_, parent, ok := strings.Cut(domain, ".")
		if !ok || parent == "" {
			return Principal{}, false
		}
		if p, ok := d.static[kind+":*."+parent]; ok {
			return p, true
		}
		domain = parent
	}
}
