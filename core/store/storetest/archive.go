package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

// archiveBase is the Stored time of the first message fillArchive writes.
var archiveBase = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fillArchive appends n messages to user's archive with IDs "m000".."m<n-1>"
// one second apart, alternating between two contacts, in batches of 7.
func fillArchive(t *testing.T, s store.Store, user string, n int) []store.ArchivedMessage {
	t.Helper()
	var all []store.ArchivedMessage
	for i := range n {
		with := "bob@example.net"
		if i%2 == 1 {
			with = "carol@example.net"
		}
		all = append(all, store.ArchivedMessage{
			User:   user,
			ID:     fmt.Sprintf("m%03d", i),
			With:   with,
			Stored: archiveBase.Add(time.Duration(i) * time.Second),
			Stanza: fmt.Sprintf("<message><body>%d</body></message>", i),
		})
	}
	for b := range slices.Chunk(all, 7) {
		noErr(t, "AppendArchive", s.AppendArchive(t.Context(), b))
	}
	return all
}

func ids(msgs []store.ArchivedMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func idRange(lo, hi int) []string {
	var out []string
	for i := lo; i < hi; i++ {
		out = append(out, fmt.Sprintf("m%03d", i))
	}
	return out
}

func testArchivePaging(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	all := fillArchive(t, s, user, 25)
	fillArchive(t, s, "dave@example.org", 3) // another archive stays out of alice's results

	got, more, err := s.QueryArchive(ctx, user, store.ArchiveQuery{Max: 100})
	noErr(t, "QueryArchive", err)
	if !slices.Equal(ids(got), idRange(0, 25)) || more {
		t.Fatalf("all: ids %v more %v", ids(got), more)
	}
	if g := got[3]; g.With != all[3].With || g.Stanza != all[3].Stanza || !g.Stored.Equal(all[3].Stored) {
		t.Errorf("message 3 = %+v, want %+v", g, all[3])
	}

	// Forward, 10 at a time.
	var fwd []string
	after := ""
	for page := 0; ; page++ {
		got, more, err := s.QueryArchive(ctx, user, store.ArchiveQuery{AfterID: after, Max: 10})
		noErr(t, "QueryArchive forward", err)
		fwd = append(fwd, ids(got)...)
		if want := page < 2; more != want {
			t.Errorf("forward page %d: more = %v, want %v", page, more, want)
		}
		if !more {
			break
		}
		after = got[len(got)-1].ID
	}
	if !slices.Equal(fwd, idRange(0, 25)) {
		t.Errorf("forward = %v", fwd)
	}

	// Backward from the end, 10 at a time; each page ascending.
	var pages [][]string
	before := ""
	for {
		got, more, err := s.QueryArchive(ctx, user, store.ArchiveQuery{BeforeID: before, Max: 10, Last: true})
		noErr(t, "QueryArchive backward", err)
		pages = append(pages, ids(got))
		if !more {
			break
		}
		before = got[0].ID
	}
	want := [][]string{idRange(15, 25), idRange(5, 15), idRange(0, 5)}
	if !slices.EqualFunc(pages, want, slices.Equal) {
		t.Errorf("backward pages = %v, want %v", pages, want)
	}

	// Max 0 returns nothing but says whether there is something.
	if got, more, err := s.QueryArchive(ctx, user, store.ArchiveQuery{}); err != nil || len(got) != 0 || !more {
		t.Errorf("Max 0: %v, %v, %v; want none, true", got, more, err)
	}
	if got, more, err := s.QueryArchive(ctx, "nobody@example.org", store.ArchiveQuery{Max: 10}); err != nil || len(got) != 0 || more {
		t.Errorf("unknown user: %v, %v, %v; want none, false", got, more, err)
	}
}

func testArchiveFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	fillArchive(t, s, user, 20)
	at := func(i int) time.Time { return archiveBase.Add(time.Duration(i) * time.Second) }
	tests := []struct {
		name string
		q    store.ArchiveQuery
		want []string
	}{
		{"with", store.ArchiveQuery{With: "carol@example.net"}, []string{"m001", "m003", "m005", "m007", "m009", "m011", "m013", "m015", "m017", "m019"}},
		{"with unknown", store.ArchiveQuery{With: "eve@example.net"}, nil},
		{"start", store.ArchiveQuery{Start: at(17)}, idRange(17, 20)},
		{"end", store.ArchiveQuery{End: at(2)}, idRange(0, 3)},
		{"start end", store.ArchiveQuery{Start: at(5), End: at(8)}, idRange(5, 9)},
		{"after before", store.ArchiveQuery{AfterID: "m004", BeforeID: "m008"}, idRange(5, 8)},
		{"ids", store.ArchiveQuery{IDs: []string{"m012", "m003", "x"}}, []string{"m003", "m012"}},
		{"ids empty", store.ArchiveQuery{IDs: []string{}}, nil},
		{"with start", store.ArchiveQuery{With: "bob@example.net", Start: at(14)}, []string{"m014", "m016", "m018"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			n, err := s.CountArchive(ctx, user, q)
			noErr(t, "CountArchive", err)
			if n != len(tc.want) {
				t.Errorf("count = %d, want %d", n, len(tc.want))
			}
			q.Max = 100
			got, more, err := s.QueryArchive(ctx, user, q)
			noErr(t, "QueryArchive", err)
			if !slices.Equal(ids(got), tc.want) || more {
				t.Errorf("ids = %v, more %v; want %v", ids(got), more, tc.want)
			}
			// The last two only, paging backwards.
			q.Max, q.Last = 2, true
			got, more, err = s.QueryArchive(ctx, user, q)
			noErr(t, "QueryArchive last", err)
			w := tc.want[max(0, len(tc.want)-2):]
			if !slices.Equal(ids(got), w) || more != (len(tc.want) > 2) {
				t.Errorf("last 2 = %v, more %v; want %v", ids(got), more, w)
			}
		})
	}
	for id, want := range map[string]bool{"m000": true, "m019": true, "m020": false, "": false} {
		if got, err := s.HasArchived(ctx, user, id); err != nil || got != want {
			t.Errorf("HasArchived(%q) = %v, %v; want %v", id, got, err, want)
		}
	}
	if got, err := s.HasArchived(ctx, "bob@example.org", "m000"); err != nil || got {
		t.Errorf("HasArchived in another archive = %v, %v; want false", got, err)
	}
}

func testArchiveAppendErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	fillArchive(t, s, user, 3)
	// A batch with a duplicate ID is refused as a whole.
	err := s.AppendArchive(ctx, []store.ArchivedMessage{
		{User: user, ID: "m100", With: "bob@example.net", Stored: archiveBase, Stanza: "<message/>"},
		{User: user, ID: "m001", With: "bob@example.net", Stored: archiveBase, Stanza: "<message/>"},
	})
	wantErr(t, "AppendArchive duplicate", err, store.ErrExists)
	if n, err := s.CountArchive(ctx, user, store.ArchiveQuery{}); err != nil || n != 3 {
		t.Errorf("after failed batch: count %d, %v; want 3", n, err)
	}
	// The same ID in another archive is fine, also in one batch with alice's.
	noErr(t, "AppendArchive two users", s.AppendArchive(ctx, []store.ArchivedMessage{
		{User: "bob@example.org", ID: "m001", With: "alice@example.org", Stored: archiveBase, Stanza: "<message/>"},
		{User: user, ID: "m003", With: "bob@example.org", Stored: archiveBase, Stanza: "<message/>"},
	}))
	if n, err := s.CountArchive(ctx, "bob@example.org", store.ArchiveQuery{}); err != nil || n != 1 {
		t.Errorf("bob's count %d, %v; want 1", n, err)
	}
	for _, m := range []store.ArchivedMessage{{ID: "x"}, {User: user}} {
		if err := s.AppendArchive(ctx, []store.ArchivedMessage{m}); err == nil {
			t.Errorf("AppendArchive(%+v) succeeded", m)
		}
	}
	noErr(t, "AppendArchive none", s.AppendArchive(ctx, nil))
}

func testArchivePrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	fillArchive(t, s, "alice@example.org", 10)
	fillArchive(t, s, "bob@example.org", 4)
	n, err := s.PruneArchive(ctx, archiveBase.Add(3*time.Second))
	noErr(t, "PruneArchive", err)
	if n != 6 {
		t.Errorf("pruned %d, want 6", n)
	}
	got, _, err := s.QueryArchive(ctx, "alice@example.org", store.ArchiveQuery{Max: 100})
	noErr(t, "QueryArchive", err)
	if !slices.Equal(ids(got), idRange(3, 10)) {
		t.Errorf("alice after prune = %v", ids(got))
	}
	got, _, err = s.QueryArchive(ctx, "bob@example.org", store.ArchiveQuery{Max: 100})
	noErr(t, "QueryArchive", err)
	if !slices.Equal(ids(got), idRange(3, 4)) {
		t.Errorf("bob after prune = %v", ids(got))
	}
	if n, err := s.PruneArchive(ctx, archiveBase); err != nil || n != 0 {
		t.Errorf("second prune = %d, %v; want 0", n, err)
	}
}
