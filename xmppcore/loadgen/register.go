package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Register creates accounts 0..n-1 of cfg.UserPattern with cfg.Password via
// XEP-0077 in-band registration, cfg.Concurrency at a time. Accounts that
// already exist count as created. Each account uses its own connection,
// because servers differ on registering twice on one stream; servers that
// throttle registrations per IP (ejabberd's registration_timeout) must have
// that disabled.
func Register(ctx context.Context, cfg Config, n int) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	var next, failed atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := registerOne(ctx, &cfg, cfg.user(i)); err != nil {
					failed.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("loadgen: register: %w", err)
	}
	if first != nil {
		return fmt.Errorf("loadgen: register: %d of %d failed, first: %w", failed.Load(), n, first)
	}
	return nil
}

func registerOne(ctx context.Context, cfg *Config, user string) error {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	x, _, err := dialStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("register %s: %w", user, err)
	}
	defer x.abort()
	// Servers accept a direct set without first fetching the form; the
	// form is only needed for CAPTCHAs, which a benchmark cannot solve.
	res, err := x.awaitIQ("reg", "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>"+
		escText(user)+"</username><password>"+escText(cfg.Password)+"</password></query></iq>")
	if err != nil {
		return fmt.Errorf("register %s: %w", user, err)
	}
	switch {
	case res.Type == "result":
	case res.Error != nil && strings.Contains(res.Error.Inner, "<conflict"):
		// Already registered, presumably by an earlier run.
	default:
		return fmt.Errorf("register %s: %w", user, errors.New(res.errText()))
	}
	x.close(time.Now().Add(time.Second))
	return nil
}
