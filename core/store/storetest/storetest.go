// Package storetest is the conformance suite that every store.Store backend must pass.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store"
)

// Run runs the conformance tests. open must return a new, empty store each
// time it is called; Run closes it when the test that opened it ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	newStore := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateGetAccount", testCreateGetAccount},
		{"CreateAccountErrors", testCreateAccountErrors},
		{"SetCredentials", testSetCredentials},
		{"ListAccounts", testListAccounts},
		{"DeleteAccount", testDeleteAccount},
		{"DeleteAccountRemovesEverything", testDeleteAccountRemovesEverything},
		{"CreateAccountStartsEmpty", testCreateAccountStartsEmpty},
		{"Roster", testRoster},
		{"RosterErrors", testRosterErrors},
		{"SubRequests", testSubRequests},
		{"Offline", testOffline},
		{"OfflineQuota", testOfflineQuota},
		{"OfflineQuotaConcurrent", testOfflineQuotaConcurrent},
		{"XML", testXML},
		{"Clearances", testClearances},
		{"Blocking", testBlocking},
		{"Rooms", testRooms},
		{"RoomAffiliations", testRoomAffiliations},
		{"CanceledContext", testCanceledContext},
		{"ArchiveOrderAndPaging", testArchivePaging},
		{"ArchiveFilters", testArchiveFilters},
		{"ArchiveAppendErrors", testArchiveAppendErrors},
		{"ArchivePrune", testArchivePrune},
		{"QueueAddGet", testQueueAddGet},
		{"QueueOrderAndClaim", testQueueOrderAndClaim},
		{"QueueDone", testQueueDone},
		{"QueueClaimConcurrent", testQueueClaimConcurrent},
		{"QueueRelease", testQueueRelease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("Close", func(t *testing.T) {
		if err := open(t).Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}

func keys(seed string) store.ScramKeys {
	return store.ScramKeys{
		Salt:       []byte(seed + "-salt"),
		Iterations: 4096,
		StoredKey:  []byte(seed + "-stored\x00\xff"),
		ServerKey:  []byte(seed + "-server"),
	}
}

func account(jid string) store.Account {
	return store.Account{
		JID:     jid,
		SHA1:    keys(jid + "/1"),
		SHA256:  keys(jid + "/256"),
		Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
	}
}

func mustCreate(t *testing.T, s store.Store, jids ...string) {
	t.Helper()
	for _, j := range jids {
		if err := s.CreateAccount(t.Context(), account(j)); err != nil {
			t.Fatalf("CreateAccount(%s): %v", j, err)
		}
	}
}

func equalKeys(a, b store.ScramKeys) bool {
	return a.Iterations == b.Iterations && bytes.Equal(a.Salt, b.Salt) &&
		bytes.Equal(a.StoredKey, b.StoredKey) && bytes.Equal(a.ServerKey, b.ServerKey)
}

func checkAccount(t *testing.T, got, want store.Account) {
	t.Helper()
	if got.JID != want.JID || !equalKeys(got.SHA1, want.SHA1) || !equalKeys(got.SHA256, want.SHA256) || !got.Created.Equal(want.Created) {
		t.Errorf("account = %+v, want %+v", got, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testCreateGetAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := account("alice@example.org")
	noErr(t, "CreateAccount", s.CreateAccount(ctx, a))
	got, err := s.GetAccount(ctx, a.JID)
	noErr(t, "GetAccount", err)
	checkAccount(t, got, a)

	// A zero Created is filled in with the current time.
	before := time.Now().Add(-time.Second)
	b := account("bob@example.org")
	b.Created = time.Time{}
	noErr(t, "CreateAccount", s.CreateAccount(ctx, b))
	got, err = s.GetAccount(ctx, b.JID)
	noErr(t, "GetAccount", err)
	if got.Created.Before(before) || got.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, want about now", got.Created)
	}

	// Only one set of keys, the other empty.
	c := store.Account{JID: "carol@example.org", SHA256: keys("c"), Created: a.Created}
	noErr(t, "CreateAccount", s.CreateAccount(ctx, c))
	got, err = s.GetAccount(ctx, c.JID)
	noErr(t, "GetAccount", err)
	checkAccount(t, got, c)

	for _, jid := range []string{"nobody@example.org", "", "ALICE@example.org"} {
		_, err := s.GetAccount(ctx, jid)
		wantErr(t, fmt.Sprintf("GetAccount(%q)", jid), err, store.ErrNotFound)
	}
}

func testCreateAccountErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := account("alice@example.org")
	noErr(t, "CreateAccount", s.CreateAccount(ctx, a))

	dup := account(a.JID)
	dup.SHA256 = keys("other")
	wantErr(t, "duplicate CreateAccount", s.CreateAccount(ctx, dup), store.ErrExists)
	got, err := s.GetAccount(ctx, a.JID)
	noErr(t, "GetAccount", err)
	checkAccount(t, got, a) // the failed create changed nothing

	if err := s.CreateAccount(ctx, store.Account{}); err == nil {
		t.Error("CreateAccount with empty JID succeeded")
	}
}

func testSetCredentials(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, "alice@example.org")
	want := account("alice@example.org")
	want.SHA1, want.SHA256 = keys("new1"), keys("new256")
	want.SHA256.Iterations = 10000
	noErr(t, "SetCredentials", s.SetCredentials(ctx, want.JID, want.SHA1, want.SHA256))
	got, err := s.GetAccount(ctx, want.JID)
	noErr(t, "GetAccount", err)
	checkAccount(t, got, want)

	wantErr(t, "SetCredentials(missing)", s.SetCredentials(ctx, "bob@example.org", keys("x"), keys("y")), store.ErrNotFound)
}

func testListAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, "zoe@example.org", "alice@example.org", "Bob@example.org", "carol@sub.example.org", "dave@example.com")
	tests := []struct {
		domain string
		want   []string
	}{
		{"example.org", []string{"Bob@example.org", "alice@example.org", "zoe@example.org"}},
		{"sub.example.org", []string{"carol@sub.example.org"}},
		{"example.com", []string{"dave@example.com"}},
		{"org", nil},
		{"unknown.test", nil},
		{"", nil},
	}
	for _, tc := range tests {
		got, err := s.ListAccounts(ctx, tc.domain)
		noErr(t, "ListAccounts", err)
		if len(got) != 0 || len(tc.want) != 0 {
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ListAccounts(%q) = %q, want %q", tc.domain, got, tc.want)
			}
		}
	}
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, "alice@example.org", "bob@example.org")
	wantErr(t, "DeleteAccount(missing)", s.DeleteAccount(ctx, "nobody@example.org"), store.ErrNotFound)
	noErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice@example.org"))
	wantErr(t, "DeleteAccount(again)", s.DeleteAccount(ctx, "alice@example.org"), store.ErrNotFound)
	_, err := s.GetAccount(ctx, "alice@example.org")
	wantErr(t, "GetAccount(deleted)", err, store.ErrNotFound)
	got, err := s.ListAccounts(ctx, "example.org")
	noErr(t, "ListAccounts", err)
	if !reflect.DeepEqual(got, []string{"bob@example.org"}) {
		t.Errorf("ListAccounts = %q, want [bob@example.org]", got)
	}
	// The JID is free again.
	mustCreate(t, s, "alice@example.org")
}

// fill gives user data of every kind.
func fill(t *testing.T, s store.Store, user string) {
	t.Helper()
	ctx := t.Context()
	_, err := s.PutRosterItem(ctx, user, store.RosterItem{Contact: "friend@example.net", Subscription: "both", Groups: []string{"Friends"}})
	noErr(t, "PutRosterItem", err)
	noErr(t, "PutSubRequest", s.PutSubRequest(ctx, user, store.SubRequest{Contact: "stranger@example.net", Stanza: "<presence type='subscribe'/>"}))
	_, err = s.StoreOffline(ctx, user, "<message/>", 10)
	noErr(t, "StoreOffline", err)
	noErr(t, "PutXML", s.PutXML(ctx, user, "vcard", "<vCard xmlns='vcard-temp'/>"))
	noErr(t, "PutXML", s.PutXML(ctx, user, "private:storage:bookmarks", "<storage xmlns='storage:bookmarks'/>"))
	noErr(t, "Block", s.Block(ctx, user, []string{"spam@example.net"}))
	noErr(t, "AppendArchive", s.AppendArchive(ctx, []store.ArchivedMessage{
		{User: user, ID: "0001", With: "friend@example.net", Stored: time.Now(), Stanza: "<message/>"}}))
}

// checkEmpty fails unless user has no data at all.
func checkEmpty(t *testing.T, s store.Store, user string) {
	t.Helper()
	ctx := t.Context()
	items, ver, err := s.Roster(ctx, user)
	noErr(t, "Roster", err)
	if len(items) != 0 || ver != 0 {
		t.Errorf("%s: roster = %v, ver %d; want empty, 0", user, items, ver)
	}
	if ver, err := s.RosterVersion(ctx, user); err != nil || ver != 0 {
		t.Errorf("%s: RosterVersion = %d, %v; want 0", user, ver, err)
	}
	_, err = s.RosterItem(ctx, user, "friend@example.net")
	wantErr(t, user+": RosterItem", err, store.ErrNotFound)
	if reqs, err := s.SubRequests(ctx, user); err != nil || len(reqs) != 0 {
		t.Errorf("%s: SubRequests = %v, %v; want none", user, reqs, err)
	}
	if msgs, err := s.OfflineMessages(ctx, user); err != nil || len(msgs) != 0 {
		t.Errorf("%s: OfflineMessages = %v, %v; want none", user, msgs, err)
	}
	if n, err := s.CountOffline(ctx, user); err != nil || n != 0 {
		t.Errorf("%s: CountOffline = %d, %v; want 0", user, n, err)
	}
	for _, k := range []string{"vcard", "private:storage:bookmarks"} {
		_, err := s.GetXML(ctx, user, k)
		wantErr(t, user+": GetXML("+k+")", err, store.ErrNotFound)
	}
	if bl, err := s.BlockList(ctx, user); err != nil || len(bl) != 0 {
		t.Errorf("%s: BlockList = %v, %v; want none", user, bl, err)
	}
	if n, err := s.CountArchive(ctx, user, store.ArchiveQuery{}); err != nil || n != 0 {
		t.Errorf("%s: CountArchive = %d, %v; want 0", user, n, err)
	}
}

func testDeleteAccountRemovesEverything(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, "alice@example.org", "bob@example.org")
	fill(t, s, "alice@example.org")
	fill(t, s, "bob@example.org")
	noErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice@example.org"))
	checkEmpty(t, s, "alice@example.org")

	// Bob keeps everything.
	items, ver, err := s.Roster(ctx, "bob@example.org")
	noErr(t, "Roster", err)
	if len(items) != 1 || ver != 1 {
		t.Errorf("bob's roster = %v, ver %d; want 1 item, ver 1", items, ver)
	}
	if n, err := s.CountOffline(ctx, "bob@example.org"); err != nil || n != 1 {
		t.Errorf("bob's CountOffline = %d, %v; want 1", n, err)
	}
	if _, err := s.GetXML(ctx, "bob@example.org", "vcard"); err != nil {
		t.Errorf("bob's vcard: %v", err)
	}
	if bl, err := s.BlockList(ctx, "bob@example.org"); err != nil || len(bl) != 1 {
		t.Errorf("bob's BlockList = %v, %v; want 1", bl, err)
	}
	if reqs, err := s.SubRequests(ctx, "bob@example.org"); err != nil || len(reqs) != 1 {
		t.Errorf("bob's SubRequests = %v, %v; want 1", reqs, err)
	}

	// A new account under the same JID starts empty.
	mustCreate(t, s, "alice@example.org")
	checkEmpty(t, s, "alice@example.org")
}

func testCreateAccountStartsEmpty(t *testing.T, s store.Store) {
	// Data written while no account exists (e.g. racing a deletion).
	fill(t, s, "ghost@example.org")
	mustCreate(t, s, "ghost@example.org")
	checkEmpty(t, s, "ghost@example.org")
}

func testRoster(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	items, ver, err := s.Roster(ctx, user)
	noErr(t, "Roster", err)
	if len(items) != 0 || ver != 0 {
		t.Fatalf("empty roster = %v, ver %d", items, ver)
	}

	steps := []struct {
		name string
		put  *store.RosterItem // nil: delete del
		del  string
		want store.RosterItem // read back after a put
	}{
		{name: "add minimal", put: &store.RosterItem{Contact: "zed@example.net"},
			want: store.RosterItem{Contact: "zed@example.net", Subscription: "none"}},
		{name: "add full", put: &store.RosterItem{Contact: "bob@example.net", Name: "Bob ✓", Subscription: "to", Ask: true, Groups: []string{"Friends", "Work, \"quoted\"", "日本"}},
			want: store.RosterItem{Contact: "bob@example.net", Name: "Bob ✓", Subscription: "to", Ask: true, Groups: []string{"Friends", "Work, \"quoted\"", "日本"}}},
		{name: "add approved", put: &store.RosterItem{Contact: "carol@example.net", Subscription: "none", Approved: true, Groups: []string{}},
			want: store.RosterItem{Contact: "carol@example.net", Subscription: "none", Approved: true}},
		{name: "replace", put: &store.RosterItem{Contact: "bob@example.net", Name: "Robert", Subscription: "both"},
			want: store.RosterItem{Contact: "bob@example.net", Name: "Robert", Subscription: "both"}},
		{name: "from", put: &store.RosterItem{Contact: "dan@example.net", Subscription: "from", Groups: []string{"A", "A"}},
			want: store.RosterItem{Contact: "dan@example.net", Subscription: "from", Groups: []string{"A", "A"}}},
		{name: "delete", del: "zed@example.net"},
	}
	model := map[string]store.RosterItem{}
	for i, st := range steps {
		var (
			got int64
			err error
		)
		if st.put != nil {
			got, err = s.PutRosterItem(ctx, user, *st.put)
			model[st.want.Contact] = st.want
		} else {
			got, err = s.DeleteRosterItem(ctx, user, st.del)
			delete(model, st.del)
		}
		noErr(t, st.name, err)
		if want := int64(i + 1); got != want {
			t.Errorf("%s: version = %d, want %d", st.name, got, want)
		}
		if st.put != nil {
			it, err := s.RosterItem(ctx, user, st.want.Contact)
			noErr(t, st.name+": RosterItem", err)
			if !reflect.DeepEqual(it, st.want) {
				t.Errorf("%s: RosterItem = %+v, want %+v", st.name, it, st.want)
			}
		}
	}

	items, ver, err = s.Roster(ctx, user)
	noErr(t, "Roster", err)
	if ver != int64(len(steps)) {
		t.Errorf("Roster ver = %d, want %d", ver, len(steps))
	}
	if rv, err := s.RosterVersion(ctx, user); err != nil || rv != ver {
		t.Errorf("RosterVersion = %d, %v; want %d", rv, err, ver)
	}
	want := []store.RosterItem{model["bob@example.net"], model["carol@example.net"], model["dan@example.net"]}
	if !reflect.DeepEqual(items, want) {
		t.Errorf("Roster = %+v\nwant %+v", items, want)
	}

	// Another user's roster is separate.
	items, ver, err = s.Roster(ctx, "bob@example.net")
	if err != nil || len(items) != 0 || ver != 0 {
		t.Errorf("other user's roster = %v, %d, %v; want empty", items, ver, err)
	}
}

func testRosterErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	if _, err := s.PutRosterItem(ctx, user, store.RosterItem{Contact: "bob@example.net"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.RosterItem(ctx, user, "nobody@example.net")
	wantErr(t, "RosterItem(missing)", err, store.ErrNotFound)
	_, err = s.RosterItem(ctx, "bob@example.net", "bob@example.net")
	wantErr(t, "RosterItem(other user)", err, store.ErrNotFound)
	_, err = s.DeleteRosterItem(ctx, user, "nobody@example.net")
	wantErr(t, "DeleteRosterItem(missing)", err, store.ErrNotFound)

	bad := []struct {
		name string
		user string
		it   store.RosterItem
	}{
		{"bad subscription", user, store.RosterItem{Contact: "x@example.net", Subscription: "pending"}},
		{"empty contact", user, store.RosterItem{}},
		{"empty user", "", store.RosterItem{Contact: "x@example.net"}},
	}
	for _, tc := range bad {
		if _, err := s.PutRosterItem(ctx, tc.user, tc.it); err == nil {
			t.Errorf("PutRosterItem(%s) succeeded", tc.name)
		}
	}
	// Failed changes leave the version alone.
	if ver, err := s.RosterVersion(ctx, user); err != nil || ver != 1 {
		t.Errorf("RosterVersion = %d, %v; want 1", ver, err)
	}
}

func testSubRequests(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	check := func(what string, want []store.SubRequest) {
		t.Helper()
		got, err := s.SubRequests(ctx, user)
		noErr(t, what, err)
		if len(got) != 0 || len(want) != 0 {
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: SubRequests = %+v, want %+v", what, got, want)
			}
		}
	}
	check("empty", nil)
	z := store.SubRequest{Contact: "zed@example.net", Stanza: "<presence type='subscribe'><status>hi</status></presence>"}
	b := store.SubRequest{Contact: "bob@example.net", Stanza: "<presence type='subscribe'/>"}
	noErr(t, "PutSubRequest", s.PutSubRequest(ctx, user, z))
	noErr(t, "PutSubRequest", s.PutSubRequest(ctx, user, b))
	check("arrival order", []store.SubRequest{z, b})

	z.Stanza = "<presence type='subscribe'><status>again</status></presence>"
	noErr(t, "PutSubRequest(replace)", s.PutSubRequest(ctx, user, z))
	check("replaced", []store.SubRequest{z, b})

	noErr(t, "DeleteSubRequest(absent)", s.DeleteSubRequest(ctx, user, "nobody@example.net"))
	noErr(t, "DeleteSubRequest(other user)", s.DeleteSubRequest(ctx, "bob@example.net", "zed@example.net"))
	noErr(t, "DeleteSubRequest", s.DeleteSubRequest(ctx, user, "zed@example.net"))
	check("deleted", []store.SubRequest{b})

	if err := s.PutSubRequest(ctx, user, store.SubRequest{Stanza: "x"}); err == nil {
		t.Error("PutSubRequest with empty contact succeeded")
	}
	if reqs, err := s.SubRequests(ctx, "bob@example.net"); err != nil || len(reqs) != 0 {
		t.Errorf("other user's SubRequests = %v, %v", reqs, err)
	}
}

func testOffline(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user, other = "alice@example.org", "bob@example.org"
	before := time.Now().Add(-time.Second)
	stanzas := []string{
		"<message><body>1</body></message>",
		"<message><body>ünïcödé ✓ 日本語</body></message>",
		"<message><body>" + strings.Repeat("x", 64<<10) + "</body></message>",
		"",
	}
	var ids []int64
	for i, st := range stanzas {
		id, err := s.StoreOffline(ctx, user, st, 100)
		noErr(t, "StoreOffline", err)
		if i > 0 && id <= ids[i-1] {
			t.Errorf("id %d after %d, want increasing", id, ids[i-1])
		}
		ids = append(ids, id)
	}
	otherID, err := s.StoreOffline(ctx, other, "<message>other</message>", 100)
	noErr(t, "StoreOffline(other)", err)

	msgs, err := s.OfflineMessages(ctx, user)
	noErr(t, "OfflineMessages", err)
	if len(msgs) != len(stanzas) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(stanzas))
	}
	for i, m := range msgs {
		if m.ID != ids[i] || m.Stanza != stanzas[i] {
			t.Errorf("message %d = id %d %.40q, want id %d %.40q", i, m.ID, m.Stanza, ids[i], stanzas[i])
		}
		if m.Stored.Before(before) || m.Stored.After(time.Now().Add(time.Second)) {
			t.Errorf("message %d stored at %v, want about now", i, m.Stored)
		}
	}
	if n, err := s.CountOffline(ctx, user); err != nil || n != len(stanzas) {
		t.Errorf("CountOffline = %d, %v; want %d", n, err, len(stanzas))
	}

	noErr(t, "DeleteOffline(none)", s.DeleteOffline(ctx, user, nil))
	// Another user's id and unknown ids are ignored.
	noErr(t, "DeleteOffline", s.DeleteOffline(ctx, user, []int64{ids[1], ids[3], otherID, -1, 1 << 60}))
	msgs, err = s.OfflineMessages(ctx, user)
	noErr(t, "OfflineMessages", err)
	if len(msgs) != 2 || msgs[0].ID != ids[0] || msgs[1].ID != ids[2] {
		t.Errorf("after delete: %d messages, want ids %d, %d", len(msgs), ids[0], ids[2])
	}
	if n, err := s.CountOffline(ctx, other); err != nil || n != 1 {
		t.Errorf("other's CountOffline = %d, %v; want 1", n, err)
	}

	// Ids are not reused after the newest message is deleted.
	noErr(t, "DeleteOffline", s.DeleteOffline(ctx, user, []int64{ids[2]}))
	id, err := s.StoreOffline(ctx, user, "<message>new</message>", 100)
	noErr(t, "StoreOffline", err)
	if id <= ids[3] || id <= otherID {
		t.Errorf("new id %d reuses an old one (max was %d)", id, max(ids[3], otherID))
	}

	if _, err := s.StoreOffline(ctx, "", "<message/>", 100); err == nil {
		t.Error("StoreOffline for empty user succeeded")
	}
	if msgs, err := s.OfflineMessages(ctx, "nobody@example.org"); err != nil || len(msgs) != 0 {
		t.Errorf("OfflineMessages(nobody) = %v, %v", msgs, err)
	}
}

func testOfflineQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	tests := []struct {
		user     string
		max      int
		attempts int
	}{
		{"zero@example.org", 0, 2},
		{"negative@example.org", -1, 1},
		{"one@example.org", 1, 3},
		{"three@example.org", 3, 5},
		{"roomy@example.org", 100, 4},
	}
	for _, tc := range tests {
		want := min(max(tc.max, 0), tc.attempts)
		for i := range tc.attempts {
			_, err := s.StoreOffline(ctx, tc.user, fmt.Sprintf("<message>%d</message>", i), tc.max)
			if i < want {
				noErr(t, fmt.Sprintf("%s: StoreOffline #%d", tc.user, i), err)
			} else {
				wantErr(t, fmt.Sprintf("%s: StoreOffline #%d", tc.user, i), err, store.ErrQuota)
			}
		}
		msgs, err := s.OfflineMessages(ctx, tc.user)
		noErr(t, "OfflineMessages", err)
		if len(msgs) != want {
			t.Fatalf("%s: %d messages, want %d", tc.user, len(msgs), want)
		}
		// The oldest are kept: a full box refuses new messages.
		for i, m := range msgs {
			if w := fmt.Sprintf("<message>%d</message>", i); m.Stanza != w {
				t.Errorf("%s: message %d = %q, want %q", tc.user, i, m.Stanza, w)
			}
		}
	}
	// Lowering the quota below the backlog refuses, and keeps the backlog.
	_, err := s.StoreOffline(ctx, "three@example.org", "<message/>", 2)
	wantErr(t, "StoreOffline over lowered quota", err, store.ErrQuota)
	// Freeing room admits again.
	msgs, _ := s.OfflineMessages(ctx, "three@example.org")
	noErr(t, "DeleteOffline", s.DeleteOffline(ctx, "three@example.org", []int64{msgs[0].ID}))
	_, err = s.StoreOffline(ctx, "three@example.org", "<message/>", 3)
	noErr(t, "StoreOffline after delete", err)
}

func testOfflineQuotaConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		user    = "alice@example.org"
		workers = 8
		each    = 10
		quota   = 25
	)
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		ok, refuse int
		other      []error
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, err := s.StoreOffline(ctx, user, fmt.Sprintf("<message>%d/%d</message>", w, i), quota)
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, store.ErrQuota):
					refuse++
				default:
					other = append(other, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("unexpected errors: %v", other)
	}
	if ok != quota || refuse != workers*each-quota {
		t.Errorf("stored %d, refused %d; want %d, %d", ok, refuse, quota, workers*each-quota)
	}
	if n, err := s.CountOffline(ctx, user); err != nil || n != quota {
		t.Errorf("CountOffline = %d, %v; want %d", n, err, quota)
	}
}

func testXML(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	steps := []struct {
		op, key, xml string
		want         map[string]string // key -> xml after the step; absent keys must be ErrNotFound
	}{
		{"get", "", "", map[string]string{}},
		{"put", "vcard", "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>",
			map[string]string{"vcard": "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>"}},
		{"put", "private:storage:bookmarks", "<storage xmlns='storage:bookmarks'/>",
			map[string]string{"vcard": "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>", "private:storage:bookmarks": "<storage xmlns='storage:bookmarks'/>"}},
		{"put", "vcard", "<vCard xmlns='vcard-temp'><FN>Älice ✓</FN></vCard>",
			map[string]string{"vcard": "<vCard xmlns='vcard-temp'><FN>Älice ✓</FN></vCard>", "private:storage:bookmarks": "<storage xmlns='storage:bookmarks'/>"}},
		{"delete", "vcard", "", map[string]string{"private:storage:bookmarks": "<storage xmlns='storage:bookmarks'/>"}},
		{"delete", "vcard", "", map[string]string{"private:storage:bookmarks": "<storage xmlns='storage:bookmarks'/>"}},
		{"put", "empty", "", map[string]string{"private:storage:bookmarks": "<storage xmlns='storage:bookmarks'/>", "empty": ""}},
	}
	allKeys := []string{"vcard", "private:storage:bookmarks", "empty", "private:other"}
	for i, st := range steps {
		switch st.op {
		case "put":
			noErr(t, fmt.Sprintf("step %d: PutXML", i), s.PutXML(ctx, user, st.key, st.xml))
		case "delete":
			noErr(t, fmt.Sprintf("step %d: DeleteXML", i), s.DeleteXML(ctx, user, st.key))
		}
		for _, k := range allKeys {
			got, err := s.GetXML(ctx, user, k)
			if want, ok := st.want[k]; ok {
				if err != nil || got != want {
					t.Errorf("step %d: GetXML(%s) = %q, %v; want %q", i, k, got, err, want)
				}
			} else {
				wantErr(t, fmt.Sprintf("step %d: GetXML(%s)", i, k), err, store.ErrNotFound)
			}
		}
	}
	_, err := s.GetXML(ctx, "bob@example.org", "private:storage:bookmarks")
	wantErr(t, "GetXML(other user)", err, store.ErrNotFound)
	if err := s.PutXML(ctx, user, "", "<x/>"); err == nil {
		t.Error("PutXML with empty key succeeded")
	}
}

func testBlocking(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	steps := []struct {
		op   string
		jids []string
		want []string
	}{
		{"list", nil, nil},
		{"block", []string{"spam@example.net", "annoying@example.com", "spam@example.net"}, []string{"annoying@example.com", "spam@example.net"}},
		{"block", []string{"example.biz", "spam@example.net"}, []string{"annoying@example.com", "example.biz", "spam@example.net"}},
		{"block", nil, []string{"annoying@example.com", "example.biz", "spam@example.net"}},
		{"unblock", []string{"example.biz", "never@blocked.net"}, []string{"annoying@example.com", "spam@example.net"}},
		{"unblock", nil, nil},
		{"unblock", nil, nil},
	}
	noErr(t, "Block(bob)", s.Block(ctx, "bob@example.org", []string{"x@example.net"}))
	for i, st := range steps {
		switch st.op {
		case "block":
			noErr(t, fmt.Sprintf("step %d: Block", i), s.Block(ctx, user, st.jids))
		case "unblock":
			noErr(t, fmt.Sprintf("step %d: Unblock", i), s.Unblock(ctx, user, st.jids))
		}
		got, err := s.BlockList(ctx, user)
		noErr(t, "BlockList", err)
		if (len(got) != 0 || len(st.want) != 0) && !reflect.DeepEqual(got, st.want) {
			t.Errorf("step %d: BlockList = %q, want %q", i, got, st.want)
		}
	}
	if err := s.Block(ctx, user, []string{"ok@example.net", ""}); err == nil {
		t.Error("Block with an empty JID succeeded")
	}
	if got, _ := s.BlockList(ctx, user); len(got) != 0 {
		t.Errorf("a refused Block stored %q", got)
	}
	// Unblocking all of alice's leaves bob's alone.
	if got, err := s.BlockList(ctx, "bob@example.org"); err != nil || len(got) != 1 {
		t.Errorf("bob's BlockList = %q, %v", got, err)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	const user = "alice@example.org"
	calls := map[string]func() error{
		"CreateAccount": func() error { return s.CreateAccount(ctx, account(user)) },
		"GetAccount":    func() error { _, err := s.GetAccount(ctx, user); return err },
		"Roster":        func() error { _, _, err := s.Roster(ctx, user); return err },
		"PutRosterItem": func() error { _, err := s.PutRosterItem(ctx, user, store.RosterItem{Contact: "b@x"}); return err },
		"StoreOffline":  func() error { _, err := s.StoreOffline(ctx, user, "<m/>", 10); return err },
		"Block":         func() error { return s.Block(ctx, user, []string{"b@x"}) },
		"PutRoom":       func() error { return s.PutRoom(ctx, store.Room{JID: "r@muc.x"}) },
		"Rooms":         func() error { _, err := s.Rooms(ctx, "muc.x"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled context: err = %v, want context.Canceled", name, err)
		}
	}
	// Nothing was written.
	if _, err := s.GetAccount(t.Context(), user); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAccount after canceled create: %v", err)
	}
	if rooms, err := s.Rooms(t.Context(), "muc.x"); err != nil || len(rooms) != 0 {
		t.Errorf("Rooms after canceled PutRoom = %v, %v; want none", rooms, err)
	}
}

func testRooms(t *testing.T, s store.Store) {
	ctx := t.Context()
	rooms := func(domain string) []store.Room {
		t.Helper()
		got, err := s.Rooms(ctx, domain)
		noErr(t, "Rooms", err)
		return got
	}
	if got := rooms("conference.example.org"); len(got) != 0 {
		t.Fatalf("Rooms on an empty store = %v", got)
	}
	steps := []struct {
		put  store.Room
		want []store.Room // rooms of conference.example.org afterwards
	}{
		{store.Room{JID: "coven@conference.example.org", Config: `{"name":"Coven"}`},
			[]store.Room{{JID: "coven@conference.example.org", Config: `{"name":"Coven"}`}}},
		{store.Room{JID: "abbey@conference.example.org", Config: "{}", Subject: "Vows ✓"},
			[]store.Room{{JID: "abbey@conference.example.org", Config: "{}", Subject: "Vows ✓"},
				{JID: "coven@conference.example.org", Config: `{"name":"Coven"}`}}},
		// Other services' rooms are not listed.
		{store.Room{JID: "elsewhere@muc.example.net", Config: "{}"},
			[]store.Room{{JID: "abbey@conference.example.org", Config: "{}", Subject: "Vows ✓"},
				{JID: "coven@conference.example.org", Config: `{"name":"Coven"}`}}},
		// Replacing keeps the place and changes both fields.
		{store.Room{JID: "coven@conference.example.org", Config: `{"name":"Witches"}`, Subject: "Cauldron"},
			[]store.Room{{JID: "abbey@conference.example.org", Config: "{}", Subject: "Vows ✓"},
				{JID: "coven@conference.example.org", Config: `{"name":"Witches"}`, Subject: "Cauldron"}}},
	}
	for i, st := range steps {
		noErr(t, fmt.Sprintf("step %d: PutRoom", i), s.PutRoom(ctx, st.put))
		if got := rooms("conference.example.org"); !reflect.DeepEqual(got, st.want) {
			t.Errorf("step %d: Rooms = %+v, want %+v", i, got, st.want)
		}
	}
	if got := rooms("muc.example.net"); len(got) != 1 || got[0].JID != "elsewhere@muc.example.net" {
		t.Errorf("Rooms(muc.example.net) = %+v", got)
	}
	noErr(t, "DeleteRoom", s.DeleteRoom(ctx, "abbey@conference.example.org"))
	if got := rooms("conference.example.org"); len(got) != 1 || got[0].JID != "coven@conference.example.org" {
		t.Errorf("Rooms after DeleteRoom = %+v", got)
	}
	wantErr(t, "DeleteRoom(absent)", s.DeleteRoom(ctx, "abbey@conference.example.org"), store.ErrNotFound)
	if err := s.PutRoom(ctx, store.Room{}); err == nil {
		t.Error("PutRoom with an empty JID succeeded")
	}
}

func testRoomAffiliations(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "coven@conference.example.org"
	wantErr(t, "SetRoomAffiliation(no room)",
		s.SetRoomAffiliation(ctx, room, store.RoomAffiliation{JID: "a@example.org", Affiliation: "owner"}), store.ErrNotFound)
	noErr(t, "PutRoom", s.PutRoom(ctx, store.Room{JID: room, Config: "{}"}))
	noErr(t, "PutRoom(other)", s.PutRoom(ctx, store.Room{JID: "other@conference.example.org", Config: "{}"}))
	noErr(t, "SetRoomAffiliation(other)", s.SetRoomAffiliation(ctx, "other@conference.example.org",
		store.RoomAffiliation{JID: "x@example.org", Affiliation: "member"}))
	steps := []struct {
		set  store.RoomAffiliation
		want []store.RoomAffiliation
	}{
		{store.RoomAffiliation{JID: "crone@example.org", Affiliation: "owner"},
			[]store.RoomAffiliation{{JID: "crone@example.org", Affiliation: "owner"}}},
		{store.RoomAffiliation{JID: "bad@example.org", Affiliation: "outcast", Reason: "Treason"},
			[]store.RoomAffiliation{{JID: "bad@example.org", Affiliation: "outcast", Reason: "Treason"},
				{JID: "crone@example.org", Affiliation: "owner"}}},
		{store.RoomAffiliation{JID: "bad@example.org", Affiliation: "member"},
			[]store.RoomAffiliation{{JID: "bad@example.org", Affiliation: "member"},
				{JID: "crone@example.org", Affiliation: "owner"}}},
		{store.RoomAffiliation{JID: "bad@example.org", Affiliation: "none"},
			[]store.RoomAffiliation{{JID: "crone@example.org", Affiliation: "owner"}}},
		{store.RoomAffiliation{JID: "never@example.org", Affiliation: ""},
			[]store.RoomAffiliation{{JID: "crone@example.org", Affiliation: "owner"}}},
		{store.RoomAffiliation{JID: "example.net", Affiliation: "outcast"},
			[]store.RoomAffiliation{{JID: "crone@example.org", Affiliation: "owner"},
				{JID: "example.net", Affiliation: "outcast"}}},
	}
	for i, st := range steps {
		noErr(t, fmt.Sprintf("step %d: SetRoomAffiliation", i), s.SetRoomAffiliation(ctx, room, st.set))
		got, err := s.RoomAffiliations(ctx, room)
		noErr(t, "RoomAffiliations", err)
		if !reflect.DeepEqual(got, st.want) {
			t.Errorf("step %d: RoomAffiliations = %+v, want %+v", i, got, st.want)
		}
	}
	if err := s.SetRoomAffiliation(ctx, room, store.RoomAffiliation{JID: "a@example.org", Affiliation: "king"}); err == nil {
		t.Error("SetRoomAffiliation with an unknown affiliation succeeded")
	}
	// Replacing the room keeps its affiliations; deleting it removes them.
	noErr(t, "PutRoom again", s.PutRoom(ctx, store.Room{JID: room, Config: `{"v":2}`}))
	if got, _ := s.RoomAffiliations(ctx, room); len(got) != 2 {
		t.Errorf("affiliations after PutRoom = %+v, want them kept", got)
	}
	noErr(t, "AppendArchive to the room", s.AppendArchive(ctx, []store.ArchivedMessage{
		{User: room, ID: "0001", With: room + "/nick", Stored: time.Unix(1000, 0), Stanza: "<message/>"}}))
	noErr(t, "DeleteRoom", s.DeleteRoom(ctx, room))
	if n, err := s.CountArchive(ctx, room, store.ArchiveQuery{}); err != nil || n != 0 {
		t.Errorf("a deleted room's archive holds %d messages (%v)", n, err)
	}
	noErr(t, "PutRoom after delete", s.PutRoom(ctx, store.Room{JID: room, Config: "{}"}))
	if got, err := s.RoomAffiliations(ctx, room); err != nil || len(got) != 0 {
		t.Errorf("a re-created room has affiliations %+v, %v", got, err)
	}
	if got, err := s.RoomAffiliations(ctx, "other@conference.example.org"); err != nil || len(got) != 1 {
		t.Errorf("other room's affiliations = %+v, %v", got, err)
	}
}

func testClearances(t *testing.T, s store.Store) {
	ctx := t.Context()
	const user = "alice@example.org"
	if _, err := s.Clearance(ctx, user); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Clearance before set: %v, want ErrNotFound", err)
	}
	noErr(t, "SetClearance", s.SetClearance(ctx, user, "NATO :: SECRET"))
	noErr(t, "SetClearance peer", s.SetClearance(ctx, "peer:example.net", "UNCLASSIFIED"))
	noErr(t, "SetClearance again", s.SetClearance(ctx, user, "NATO :: CONFIDENTIAL; Releasable To: GBR"))
	if got, err := s.Clearance(ctx, user); err != nil || got != "NATO :: CONFIDENTIAL; Releasable To: GBR" {
		t.Fatalf("Clearance = %q, %v", got, err)
	}
	noErr(t, "SetClearance empty", s.SetClearance(ctx, user, ""))
	if _, err := s.Clearance(ctx, user); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Clearance after removal: %v, want ErrNotFound", err)
	}
	// A user's clearance goes with the account; other principals stay.
	noErr(t, "CreateAccount", s.CreateAccount(ctx, store.Account{JID: user}))
	noErr(t, "SetClearance", s.SetClearance(ctx, user, "SECRET"))
	noErr(t, "DeleteAccount", s.DeleteAccount(ctx, user))
	if _, err := s.Clearance(ctx, user); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("clearance survived DeleteAccount: %v", err)
	}
	if got, err := s.Clearance(ctx, "peer:example.net"); err != nil || got != "UNCLASSIFIED" {
		t.Fatalf("peer clearance = %q, %v", got, err)
	}
	if err := s.SetClearance(ctx, "", "SECRET"); err == nil {
		t.Fatal("SetClearance with an empty principal succeeded")
	}
}
