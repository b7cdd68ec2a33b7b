package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/term"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
)

const userUsage = `Usage:
  aldis user add    [--config FILE] USER   create an account (password from stdin or a prompt)
  aldis user passwd [--config FILE] USER   change a password (password from stdin or a prompt)
  aldis user del    [--config FILE] USER   delete an account and all its data
  aldis user list   [--config FILE]        list accounts
  aldis user clearance [--config FILE] USER [EXPR]
                                           show a user's security clearance, or set it to EXPR
                                           (e.g. "SECRET; Releasable To: GBR"; "" for the default)
USER is a localpart ("alice") or a bare JID ("alice@example.org") of the served domain.
The server may be running: both use the same database.
`

func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, "aldis user:", err)
		return 1
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, cfg.StoragePath())
	if err != nil {
		fmt.Fprintln(stderr, "aldis user: open store:", err)
		return 1
	}
	defer st.Close()
	m := accounts.New(st, cfg.Auth.SCRAMIterations)
	if sub == "list" {
		for _, d := range cfg.Domains() {
			l, err := m.List(ctx, d)
			if err != nil {
				fmt.Fprintln(stderr, "aldis user list:", err)
				return 1
			}
			for _, u := range l {
				fmt.Fprintln(stdout, u)
			}
		}
		return 0
	}
	if sub == "clearance" {
		return userClearance(ctx, cfg, *path, st, fs.Args(), stdout, stderr)
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	user, err := userJID(fs.Arg(0), cfg)
	if err != nil {
		fmt.Fprintln(stderr, "aldis user:", err)
		return 1
	}
	switch sub {
	case "add", "passwd":
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "aldis user:", err)
			return 1
		}
		if sub == "add" {
			err = m.Create(ctx, user, pw)
		} else {
			err = m.SetPassword(ctx, user, pw)
		}
		if err != nil {
			switch {
			case errors.Is(err, store.ErrExists):
				fmt.Fprintf(stderr, "aldis user add: %s already exists\n", user)
			case errors.Is(err, store.ErrNotFound):
				fmt.Fprintf(stderr, "aldis user passwd: %s does not exist\n", user)
			default:
				fmt.Fprintln(stderr, "aldis user:", err)
			}
			return 1
		}
		if sub == "add" {
			fmt.Fprintf(stdout, "created %s\n", user)
		} else {
			fmt.Fprintf(stdout, "password of %s changed\n", user)
		}
	case "del":
		if err := m.Delete(ctx, user); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				fmt.Fprintf(stderr, "aldis user del: %s does not exist\n", user)
			} else {
				fmt.Fprintln(stderr, "aldis user del:", err)
			}
			return 1
		}
		fmt.Fprintf(stdout, "deleted %s\n", user)
	default:
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	return 0
}

// userJID accepts a localpart (of the primary domain) or a bare JID of a
// domain served.
func userJID(arg string, cfg config.Config) (jid.JID, error) {
	if !strings.Contains(arg, "@") {
		arg += "@" + cfg.Server.Domain
	}
	u, err := jid.Parse(arg)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%q is not a valid user: %w", arg, err)
	}
	if !u.IsBare() || u.Local() == "" {
		return jid.JID{}, fmt.Errorf("%q is not a bare JID with a localpart", arg)
	}
	if !slices.Contains(cfg.Domains(), u.Domain()) {
		return jid.JID{}, fmt.Errorf("%s is not in a domain served (%s)", u, strings.Join(cfg.Domains(), ", "))
	}
	return u, nil
}

// readPassword prompts twice without echo on a terminal, and otherwise reads
// one line from stdin; passwords never come from the command line.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Repeat password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("passwords do not match")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// userClearance shows or sets a user's clearance, checked against the
// configured security policy.
func userClearance(ctx context.Context, cfg config.Config, cfgPath string, st *sqlite.DB, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	set, err := loadPolicy(cfg, cfgPath)
	if err != nil {
		printConfigErr(stderr, err)
		return 1
	}
	if set == nil {
		fmt.Fprintln(stderr, "aldis user clearance: security labels are off: set labels.policy_file in the configuration")
		return 1
	}
	user, err := userJID(args[0], cfg)
	if err != nil {
		fmt.Fprintln(stderr, "aldis user:", err)
		return 1
	}
	if _, err := st.GetAccount(ctx, user.String()); err != nil {
		fmt.Fprintf(stderr, "aldis user clearance: %s does not exist\n", user)
		return 1
	}
	dir := identity.New(set, st, nil, 0)
	if len(args) == 2 {
		if err := dir.SetUser(ctx, user.String(), args[1]); err != nil {
			fmt.Fprintln(stderr, "aldis user clearance:", err)
			return 1
		}
	}
	expr, err := st.Clearance(ctx, user.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		c := dir.User(ctx, user.String())
		if c == nil {
			fmt.Fprintf(stdout, "%s: none (the policy gives no default: cleared for nothing labelled)\n", user)
		} else {
			fmt.Fprintf(stdout, "%s: policy default (%s)\n", user, c)
		}
	case err != nil:
		fmt.Fprintln(stderr, "aldis user clearance:", err)
		return 1
	default:
		fmt.Fprintf(stdout, "%s: %s (%s)\n", user, expr, dir.User(ctx, user.String()))
	}
	return 0
}
