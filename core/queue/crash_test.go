package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
)

// The crash tests run this test binary as a child process (TestCrashChild,
// selected by the environment), kill it with SIGKILL, and run it again on
// the same database.

const (
	envDir  = "ALDIS_QUEUE_CRASH_DIR"
	envAdd  = "ALDIS_QUEUE_CRASH_ADD"  // items to add, one at a time
	envDown = "ALDIS_QUEUE_CRASH_DOWN" // "1": every delivery fails (the destination is down)
	workers = 4
)

// TestCrashChild is the child process: it adds items one by one, printing
// "added KEY" once each Add has returned, while delivering them (appending
// each key to the file "delivered", synced, before it is acknowledged).
// With nothing to add it drains the queue, prints "drained" and exits.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envDir)
	if dir == "" {
		t.Skip("run by the crash tests")
	}
	n, _ := strconv.Atoi(os.Getenv(envAdd))
	down := os.Getenv(envDown) == "1"
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "delivered"), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_SYNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(db, Config{
		Name: "crash", Owner: "child", Workers: workers, PerDest: workers, Lease: time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Deliver: func(ctx context.Context, it Item) error {
			if down {
				return errors.New("connection refused")
			}
			time.Sleep(time.Millisecond)
			_, err := out.WriteString(it.Key + "\n")
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go q.Run(ctx)
	for i := range n {
		key := fmt.Sprintf("k%05d", i)
		if _, err := q.Add(ctx, Item{Key: key, Dest: fmt.Sprint("d", i%3), Payload: []byte("mail " + key)}); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("added %s\n", key)
	}
	if n > 0 {
		select {} // until killed
	}
	for {
		if c, err := q.Count(ctx); err == nil && c == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("drained")
}

type child struct {
	cmd  *exec.Cmd
	outs *bufio.Scanner
}

func startChild(t *testing.T, dir string, add int, down bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	d := "0"
	if down {
		d = "1"
	}
	cmd.Env = append(os.Environ(), envDir+"="+dir, envAdd+"="+strconv.Itoa(add), envDown+"="+d)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return &child{cmd: cmd, outs: bufio.NewScanner(stdout)}
}

// readAdded reads "added" lines until it has n of them.
func (c *child) readAdded(t *testing.T, n int) []string {
	t.Helper()
	var keys []string
	for len(keys) < n && c.outs.Scan() {
		if k, ok := strings.CutPrefix(c.outs.Text(), "added "); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) < n {
		t.Fatalf("child stopped after adding %d items: %v", len(keys), c.outs.Err())
	}
	return keys
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

// drain runs a child that delivers what is queued, and waits for it.
func drain(t *testing.T, dir string) {
	t.Helper()
	c := startChild(t, dir, 0, false)
	done := make(chan bool, 1)
	go func() {
		for c.outs.Scan() {
			if c.outs.Text() == "drained" {
				done <- true
				return
			}
		}
		done <- false
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("the draining child exited without draining")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the draining child did not drain the queue in 2 minutes")
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("draining child: %v", err)
	}
}

func deliveries(t *testing.T, dir string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "delivered"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	got := map[string]int{}
	for line := range strings.Lines(string(data)) {
		got[strings.TrimSuffix(line, "\n")]++
	}
	return got
}

// TestCrashWhileQueued kills the process while every item waits for a
// destination that is down, restarts it with the destination up, and
// checks each acknowledged item is delivered exactly once.
func TestCrashWhileQueued(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	c := startChild(t, dir, 300, true)
	added := c.readAdded(t, 300)
	c.kill(t)
	drain(t, dir)
	got := deliveries(t, dir)
	for _, k := range added {
		if got[k] != 1 {
			t.Errorf("%s delivered %d times, want 1", k, got[k])
		}
	}
	if len(got) != len(added) {
		t.Errorf("%d keys delivered, %d added", len(got), len(added))
	}
}

// TestCrashWhileDelivering kills the process in the middle of adding and
// delivering, restarts it, and checks that every item whose Add returned
// is delivered, and that duplicates are confined to the at-least-once
// boundary: at most the deliveries under way at the kill.
func TestCrashWhileDelivering(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	c := startChild(t, dir, 100000, false)
	added := c.readAdded(t, 400)
	c.kill(t)
	drain(t, dir)
	got := deliveries(t, dir)
	dups := 0
	for k, n := range got {
		if n > 1 {
			dups += n - 1
			t.Logf("%s delivered %d times (under way at the kill)", k, n)
		}
	}
	for _, k := range added {
		if got[k] == 0 {
			t.Errorf("%s acknowledged by Add but never delivered", k)
		}
	}
	if dups > workers {
		t.Errorf("%d duplicate deliveries, want at most %d (the deliveries under way)", dups, workers)
	}
	t.Logf("%d acknowledged before the kill, %d delivered in all, %d duplicates", len(added), len(got), dups)
}
