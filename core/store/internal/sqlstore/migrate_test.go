package sqlstore

import (
	"database/sql"
	"errors"
	"testing"

	_ "modernc.org/sqlite"
)

func memDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // each ":memory:" connection is its own database
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func tables(t *testing.T, db *sql.DB) map[string]bool {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT name FROM sqlite_schema WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		m[n] = true
	}
	return m
}

func TestMigrate(t *testing.T) {
	step := func(table string) Migration {
		return Migration{Name: "create " + table, Stmts: []string{`CREATE TABLE ` + table + ` (x INTEGER)`}}
	}
	bad := Migration{Name: "broken", Stmts: []string{`CREATE TABLE c (x INTEGER)`, `NOT SQL`}}
	db := memDB(t)
	ctx := t.Context()

	steps := []struct {
		name       string
		migrations []Migration
		wantVer    int
		wantErr    error // nil, ErrSchemaTooNew, or errAny
		wantTables []string
		notTables  []string
	}{
		{"empty history", nil, 0, nil, []string{"schema_version"}, []string{"a"}},
		{"fresh", []Migration{step("a")}, 1, nil, []string{"a"}, []string{"b"}},
		{"again", []Migration{step("a")}, 1, nil, []string{"a"}, nil},
		{"upgrade", []Migration{step("a"), step("b")}, 2, nil, []string{"a", "b"}, nil},
		// A failing step rolls back the whole upgrade, including the steps before it.
		{"failing step", []Migration{step("a"), step("b"), step("d"), bad}, 0, errAny, []string{"a", "b"}, []string{"c", "d"}},
		{"too new", []Migration{step("a")}, 0, ErrSchemaTooNew, []string{"a", "b"}, nil},
	}
	for _, st := range steps {
		ver, err := Migrate(ctx, db, st.migrations)
		switch {
		case st.wantErr == nil && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantErr == errAny && err == nil, st.wantErr != nil && st.wantErr != errAny && !errors.Is(err, st.wantErr):
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if err == nil && ver != st.wantVer {
			t.Errorf("%s: version %d, want %d", st.name, ver, st.wantVer)
		}
		have := tables(t, db)
		for _, tb := range st.wantTables {
			if !have[tb] {
				t.Errorf("%s: table %s missing", st.name, tb)
			}
		}
		for _, tb := range st.notTables {
			if have[tb] {
				t.Errorf("%s: table %s exists", st.name, tb)
			}
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_version`).Scan(&n); err != nil || n != 2 {
		t.Errorf("schema_version has %d rows, %v; want 2", n, err)
	}
}

var errAny = errors.New("any error")
