package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/core/store/storetest"
)

func openMemory(t testing.TB) store.Store {
	db, err := OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func openTemp(t testing.TB) store.Store {
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "aldis.db"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openMemory(t) })
}

func TestConformanceFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func BenchmarkMemory(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return openMemory(b) })
}

func BenchmarkFile(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return openTemp(b) })
}

func mustOpen(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// rawDB opens the file without the store, to inspect or tamper with it.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", fileDSN(path, map[string][]string{"_pragma": {"busy_timeout(5000)"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func versions(t *testing.T, path string) []int {
	t.Helper()
	rows, err := rawDB(t, path).QueryContext(t.Context(), `SELECT version FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestOpenCreatesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "aldis")
	path := filepath.Join(dir, "aldis.db")
	db := mustOpen(t, path)
	if err := db.CreateAccount(t.Context(), store.Account{JID: "a@example.org"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Dir(dir), 0o700},
		{dir, 0o700},
		{path, 0o600},
		{path + "-wal", 0o600},
		{path + "-shm", 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("stat: %v", err)
			continue
		}
		if got := fi.Mode().Perm(); got != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, got, c.mode)
		}
	}
	var mode string
	if err := rawDB(t, path).QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpenOddPath(t *testing.T) {
	// URI syntax characters in the path must not be read as URI syntax.
	path := filepath.Join(t.TempDir(), "we?ird #dir%20", "a&b=c.db")
	db := mustOpen(t, path)
	if err := db.CreateAccount(t.Context(), store.Account{JID: "a@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the literal path: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "a&b=c.db") {
			t.Errorf("stray file %q", e.Name())
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"empty path", ""},
		{"directory", dir},
		{"not a database", garbage},
		{"parent is a file", filepath.Join(blocker, "aldis.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(t.Context(), tc.path)
			if err == nil {
				_ = db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aldis.db")
	want := len(migrations())

	// Fresh database: every step applied once.
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(t, path); len(got) != want || got[len(got)-1] != want {
		t.Fatalf("fresh: versions %v, want 1..%d", got, want)
	}
	if err := db.CreateAccount(t.Context(), store.Account{JID: "a@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Already migrated: nothing re-applied, data kept.
	db = mustOpen(t, path)
	if got := versions(t, path); len(got) != want {
		t.Errorf("reopened: versions %v, want 1..%d", got, want)
	}
	if _, err := db.GetAccount(t.Context(), "a@example.org"); err != nil {
		t.Errorf("data lost on reopen: %v", err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aldis.db")
	db := mustOpen(t, path)
	_ = db.Close()
	newer := len(migrations()) + 5
	if _, err := rawDB(t, path).ExecContext(t.Context(),
		`INSERT INTO schema_version (version, applied) VALUES ($1, 0)`, newer); err != nil {
		t.Fatal(err)
	}
	db, err := Open(t.Context(), path)
	if err == nil {
		_ = db.Close()
		t.Fatal("Open accepted a database from a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(newer)) {
		t.Errorf("error %q does not name the database's version %d", err, newer)
	}
	t.Log(err)
}

func TestOpenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if db, err := Open(ctx, filepath.Join(t.TempDir(), "a.db")); err == nil {
		_ = db.Close()
		t.Fatal("Open with canceled context succeeded")
	}
}

// TestTwoHandles opens one file twice, as the server and the CLI do, and
// writes through both at once.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aldis.db")
	server, cli := mustOpen(t, path), mustOpen(t, path)
	ctx := t.Context()

	if err := cli.CreateAccount(ctx, store.Account{JID: "new@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.GetAccount(ctx, "new@example.org"); err != nil {
		t.Errorf("server does not see the CLI's account: %v", err)
	}

	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for _, db := range []*DB{server, cli} {
		wg.Go(func() {
			for range n {
				if _, err := db.StoreOffline(ctx, "bob@example.org", "<message/>", 1<<20); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range n {
				if _, err := db.CountOffline(ctx, "bob@example.org"); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, db := range []*DB{server, cli} {
		if got, err := db.CountOffline(ctx, "bob@example.org"); err != nil || got != 2*n {
			t.Errorf("CountOffline = %d, %v; want %d", got, err, 2*n)
		}
	}
}

const (
	helperEnvDB   = "ALDIS_STORE_TEST_HELPER_DB"
	helperEnvKill = "ALDIS_STORE_TEST_HELPER_KILL"
	helperN       = 150
	helperReady   = "helper: committed"
)

// TestHelperProcess is the second process of TestTwoProcesses and
// TestSurvivesKill.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnvDB)
	if path == "" {
		t.Skip("helper for TestTwoProcesses and TestSurvivesKill")
	}
	db := mustOpen(t, path)
	ctx := t.Context()
	if os.Getenv(helperEnvKill) != "" {
		for range helperN {
			if _, err := db.StoreOffline(ctx, "bob@example.org", "<message>doomed</message>", 1<<20); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Println(helperReady)
		time.Sleep(time.Minute) // until killed, without closing the database
		return
	}
	for i := range helperN {
		if _, err := db.StoreOffline(ctx, "bob@example.org", "<message>child</message>", 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAccount(ctx, store.Account{JID: fmt.Sprintf("child%d@example.org", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTwoProcesses writes to one file from this process and a child process
// at once: file locking, busy_timeout and BEGIN IMMEDIATE must make every
// write succeed.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "aldis.db")
	db := mustOpen(t, path)
	ctx := t.Context()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperEnvDB+"="+path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < helperN && time.Now().Before(deadline); i++ {
		if _, err := db.StoreOffline(ctx, "bob@example.org", "<message>parent</message>", 1<<20); err != nil {
			t.Error(err)
		}
		if err := db.CreateAccount(ctx, store.Account{JID: fmt.Sprintf("parent%d@example.org", i)}); err != nil {
			t.Error(err)
		}
		if _, err := db.ListAccounts(ctx, "example.org"); err != nil {
			t.Error(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestHelperProcess") {
		t.Fatalf("child did not run:\n%s", out.String())
	}
	if n, err := db.CountOffline(ctx, "bob@example.org"); err != nil || n != 2*helperN {
		t.Errorf("CountOffline = %d, %v; want %d", n, err, 2*helperN)
	}
	msgs, err := db.OfflineMessages(ctx, "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].ID <= msgs[i-1].ID {
			t.Fatalf("ids not increasing: %d after %d", msgs[i].ID, msgs[i-1].ID)
		}
	}
	if all, err := db.ListAccounts(ctx, "example.org"); err != nil || len(all) != 2*helperN {
		t.Errorf("ListAccounts: %d accounts, %v; want %d", len(all), err, 2*helperN)
	}
}

// TestSurvivesKill checks the durability promise of WAL with
// synchronous=NORMAL: whatever was committed survives a SIGKILL of the
// process that committed it.
func TestSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "aldis.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnvDB+"="+path, helperEnvKill+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(out.String(), helperReady) {
		n, err := stdout.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child ended before committing: %v\n%s", err, out.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	db := mustOpen(t, path)
	if n, err := db.CountOffline(t.Context(), "bob@example.org"); err != nil || n != helperN {
		t.Errorf("after SIGKILL: CountOffline = %d, %v; want %d", n, err, helperN)
	}
}
