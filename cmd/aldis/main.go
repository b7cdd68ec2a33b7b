// Command aldis is the Aldis secure messaging server and its tools.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `aldis — secure messaging server (XMPP)

Usage:
  aldis serve   [--config FILE]           run the server (no file: embedded defaults on localhost)
  aldis check   --config FILE             validate a configuration file and exit
  aldis user    add|del|passwd|list ...   manage accounts (aldis user -h)
  aldis bench   [flags]                   measure an XMPP server, or an IRC gateway with --irc (aldis bench -h)
  aldis linksim [flags]                   simulate an HF radio link: two STANAG 5066 SIS nodes (aldis linksim -h)
  aldis gateway irc --config FILE         run the IRC gateway as a component of another server
  aldis version                           print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "user":
		return cmdUser(args[1:], stdin, stdout, stderr)
	case "gateway":
		return cmdGateway(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "linksim":
		return cmdLinksim(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "aldis", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "aldis: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
