package mailxmpp

import (
	"container/list"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
)

// maxRefs bounds the message IDs a thread remembers for References.
const maxRefs = 20

// maxThreadLen bounds an XMPP thread id carried inside a Message-ID.
const maxThreadLen = 96

// threads ties XMPP <thread> ids to mail Message-IDs, both ways, per
// party (a user's or a room's bare JID, so nobody can read another's
// message IDs through a thread id). It holds at most max threads and
// forgets the least recently used.
//
// Message-IDs the bridge makes carry the thread they belong to, so a
// reply to one finds its thread even after the table forgot it (or the
// server restarted).
type threads struct {
	mu    sync.Mutex
	max   int
	lru   *list.List                  // of *thread, most recent first
	byKey map[threadKey]*list.Element // (party, thread id)
	byMID map[threadMID]*list.Element // (party, message ID)
}

type threadKey struct{ party, id string }
type threadMID struct{ party, mid string }

type thread struct {
	key     threadKey
	refs    []string // message IDs, oldest first
	subject string
}

func newThreads(max int) *threads {
	return &threads{max: max, lru: list.New(), byKey: map[threadKey]*list.Element{}, byMID: map[threadMID]*list.Element{}}
}

// Inbound files a mail with its Message-ID and the IDs it answers (In-
// Reply-To, References), and returns the XMPP thread id it belongs to.
func (t *threads) Inbound(party, host, mid string, answers []string, subject string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var e *list.Element
	for i := len(answers) - 1; i >= 0 && e == nil; i-- {
		e = t.byMID[threadMID{party, answers[i]}]
	}
	var id string
	switch {
	case e != nil:
		id = e.Value.(*thread).key.id
	default:
		for _, a := range answers {
			if tid, ok := threadOfMID(a, host); ok {
				id = tid
				break
			}
		}
		if id == "" {
			root := mid
			if len(answers) > 0 {
				root = answers[0]
			}
			if root == "" {
				root = newID()
			}
			h := sha256.Sum256([]byte(root))
			id = "mail-" + hex.EncodeToString(h[:10])
		}
		e = t.byKey[threadKey{party, id}]
	}
	th := t.touch(e, threadKey{party, id})
	if len(th.refs) == 0 && len(answers) > 0 {
		// Start from what the mail says its thread is.
		for _, a := range answers[max(0, len(answers)-maxRefs+1):] {
			t.addRef(th, a)
		}
	}
	if mid != "" {
		t.addRef(th, mid)
	}
	if subject != "" {
		th.subject = subject
	}
	return id
}

// Outbound files a mail made from a message in XMPP thread id (empty: a
// new thread) and returns what it answers: In-Reply-To, References and
// the thread's last subject.
func (t *threads) Outbound(party, id, mid string) (inReplyTo string, refs []string, subject string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id == "" {
		return "", nil, ""
	}
	th := t.touch(t.byKey[threadKey{party, id}], threadKey{party, id})
	if n := len(th.refs); n > 0 {
		inReplyTo = th.refs[n-1]
		refs = append([]string(nil), th.refs...)
	}
	subject = th.subject
	t.addRef(th, mid)
	return inReplyTo, refs, subject
}

// SetSubject records the subject of a thread's latest mail.
func (t *threads) SetSubject(party, id, subject string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.byKey[threadKey{party, id}]; e != nil && subject != "" {
		e.Value.(*thread).subject = subject
	}
}

// touch returns the thread of e (or a new one for key), most recent now.
func (t *threads) touch(e *list.Element, key threadKey) *thread {
	if e != nil {
		t.lru.MoveToFront(e)
		return e.Value.(*thread)
	}
	for t.lru.Len() >= t.max {
		old := t.lru.Back()
		th := old.Value.(*thread)
		delete(t.byKey, th.key)
		for _, r := range th.refs {
			if t.byMID[threadMID{th.key.party, r}] == old {
				delete(t.byMID, threadMID{th.key.party, r})
			}
		}
		t.lru.Remove(old)
	}
	th := &thread{key: key}
	t.byKey[key] = t.lru.PushFront(th)
	return th
}

func (t *threads) addRef(th *thread, mid string) {
	if mid == "" {
		return
	}
	e := t.byKey[th.key]
	if len(th.refs) >= maxRefs {
		// Keep the root (the first) and the most recent ones.
		gone := th.refs[1]
		if t.byMID[threadMID{th.key.party, gone}] == e {
			delete(t.byMID, threadMID{th.key.party, gone})
		}
		th.refs = append(th.refs[:1], th.refs[2:]...)
	}
	th.refs = append(th.refs, mid)
	t.byMID[threadMID{th.key.party, mid}] = e
}

// newMID makes a Message-ID (without brackets) for a mail in XMPP thread
// id: the thread rides in it when short enough.
func newMID(host, id string) string {
	local := "x" + newID()
	if id != "" && len(id) <= maxThreadLen {
		local += "." + base64.RawURLEncoding.EncodeToString([]byte(id))
	}
	return local + "@" + host
}

// threadOfMID reads the thread id out of a Message-ID made by newMID.
func threadOfMID(mid, host string) (string, bool) {
	local, h, ok := strings.Cut(mid, "@")
	if !ok || !strings.EqualFold(h, host) || !strings.HasPrefix(local, "x") {
		return "", false
	}
	_, enc, ok := strings.Cut(local, ".")
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(b) == 0 || len(b) > maxThreadLen || !validThread(string(b)) {
		return "", false
	}
	return string(b), true
}

// validThread accepts thread ids that are printable and short.
func validThread(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}
