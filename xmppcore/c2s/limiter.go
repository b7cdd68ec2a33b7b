package c2s

import (
	"sync"
	"time"
)

// AuthLimiter counts failed logins per remote IP and per account in a fixed
// window and refuses further attempts once either passes its limit.
type AuthLimiter struct {
	maxIP, maxAcct int
	window         time.Duration

	mu     sync.Mutex
	ips    map[string]*window
	accts  map[string]*window
	now    func() time.Time
	nSweep int
}

type window struct {
	start time.Time
	n     int
}

// maxTracked bounds the memory an attacker can make the limiter hold.
const maxTracked = 100000

// NewAuthLimiter returns a limiter; a max of 0 disables that limit.
func NewAuthLimiter(maxIP, maxAcct int, win time.Duration) *AuthLimiter {
	return &AuthLimiter{maxIP: maxIP, maxAcct: maxAcct, window: win,
		ips: map[string]*window{}, accts: map[string]*window{}, now: time.Now}
}

func (l *AuthLimiter) over(m map[string]*window, key string, max int, now time.Time) bool {
	if max <= 0 || key == "" {
		return false
	}
	w := m[key]
	return w != nil && now.Sub(w.start) < l.window && w.n >= max
}

// Blocked reports whether attempts from ip or for account are refused now.
func (l *AuthLimiter) Blocked(ip, account string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	return l.over(l.ips, ip, l.maxIP, now) || l.over(l.accts, account, l.maxAcct, now)
}

// Fail records a failed attempt.
func (l *AuthLimiter) Fail(ip, account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.bump(l.ips, ip, now)
	l.bump(l.accts, account, now)
}

func (l *AuthLimiter) bump(m map[string]*window, key string, now time.Time) {
	if key == "" {
		return
	}
	w := m[key]
	if w == nil || now.Sub(w.start) >= l.window {
		if len(m) >= maxTracked {
			l.sweep(m, now)
			if len(m) >= maxTracked {
				return // still full of live entries: stop tracking new keys
			}
		}
		w = &window{start: now}
		m[key] = w
	}
	w.n++
}

func (l *AuthLimiter) sweep(m map[string]*window, now time.Time) {
	for k, w := range m {
		if now.Sub(w.start) >= l.window {
			delete(m, k)
		}
	}
}
