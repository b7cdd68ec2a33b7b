// Package store defines the protocol-free persistence interface of the server.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors; implementations wrap them with context, so test with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	ErrQuota    = errors.New("store: quota exceeded")
)

// ScramKeys are stored SCRAM credentials for one hash function.
type ScramKeys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Account is a local user account.
type Account struct {
	JID     string // bare JID, the key
	SHA1    ScramKeys
	SHA256  ScramKeys
	Created time.Time // set to the current time by CreateAccount when zero
}

// RosterItem is one entry of a user's roster.
type RosterItem struct {
	Contact      string // bare JID
	Name         string
	Subscription string // "none", "to", "from", "both"; empty means "none"
	Ask          bool   // pending out (we sent subscribe, no answer yet)
	Approved     bool   // pre-approved inbound subscription (RFC 6121 §3.4)
	Groups       []string
}

// OfflineMessage is a stanza kept for a user who was offline (XEP-0160).
type OfflineMessage struct {
	ID     int64
	Stanza string
	Stored time.Time
}

// SubRequest is a pending inbound subscription request, kept until answered.
type SubRequest struct {
	Contact string
	Stanza  string
}

// Room is a persistent multi-user chat room. Config and Subject are opaque
// to the store: the MUC service encodes them.
type Room struct {
	JID     string // bare JID of the room, the key
	Config  string
	Subject string
}

// RoomAffiliation is a user's long-lived standing in a room (XEP-0045 §5.2).
type RoomAffiliation struct {
	JID         string // bare JID of the user (or a domain, for a domain ban)
	Affiliation string // "owner", "admin", "member" or "outcast"
	Reason      string
}

// ArchivedMessage is one message of a user's message archive (XEP-0313).
type ArchivedMessage struct {
	User   string    // bare JID of the archive's owner
	ID     string    // unique per archive; IDs sort as text in archive order
	With   string    // bare JID of the other party
	Stored time.Time // when it was archived; Start/End filter and pruning use it
	Stanza string
}

// ArchiveQuery selects messages of one archive. Every filter set must match.
type ArchiveQuery struct {
	With     string    // only messages with this bare JID; "" for all
	Start    time.Time // only messages stored at or after Start, unless zero
	End      time.Time // only messages stored at or before End, unless zero
	AfterID  string    // only IDs greater than AfterID, unless ""
	BeforeID string    // only IDs less than BeforeID, unless ""
	IDs      []string  // only these IDs, unless nil
	// Max bounds the messages returned; <= 0 returns none (use it to count).
	Max int
	// Last returns the Max highest IDs instead of the lowest (paging
	// backwards); either way they come back in ascending ID order.
	Last bool
}

// QueueItem is one item of a durable store-and-forward queue (see
// core/queue, which gives the fields their meaning; the store keeps them).
type QueueItem struct {
	ID    int64  // assigned by QueueAdd, never reused
	Queue string // the queue's name: each queue is independent
	// Key is the idempotency key, unique within the queue for as long as
	// the item or its tombstone exists.
	Key      string
	Dest     string // destination key: delivery concurrency is bounded per destination
	Priority int    // higher is delivered first
	Meta     map[string]string
	Payload  []byte
	Attempts int       // delivery attempts begun (claims)
	Created  time.Time // when it was added
	// Due is when the item may next be claimed; while claimed, when the
	// claim lapses.
	Due       time.Time
	Expires   time.Time // the item fails for good after this; zero: never
	Lease     string    // the current claim's token; "" when not claimed
	LastError string
}

// QueueDueQuery selects the items of a queue that may be claimed.
type QueueDueQuery struct {
	Queue     string
	Now       time.Time // items due at or before Now
	SkipDests []string  // leave out items for these destinations
	Max       int       // at most this many, highest priority, then earliest due, then lowest ID
}

// Store is the server's persistent state. Implementations are safe for
// concurrent use, and every method is atomic.
//
// Users and contacts are bare JID strings ("alice@example.org") and stanzas
// are opaque strings. Keys are compared byte for byte: callers normalise JIDs
// before they reach the store. Reads about an unknown user return empty
// results, not ErrNotFound, unless documented otherwise.
type Store interface {
	// CreateAccount adds an account; ErrExists if the JID is taken. Data
	// left under the JID by writes made while no account existed is
	// discarded, so a new account always starts empty.
	CreateAccount(ctx context.Context, a Account) error
	// GetAccount returns an account; ErrNotFound if absent.
	GetAccount(ctx context.Context, jid string) (Account, error)
	// SetCredentials replaces both sets of SCRAM keys; ErrNotFound if absent.
	SetCredentials(ctx context.Context, jid string, sha1, sha256 ScramKeys) error
	// DeleteAccount removes the account and all of the user's data in one
	// transaction; ErrNotFound if absent.
	DeleteAccount(ctx context.Context, jid string) error
	// ListAccounts returns the bare JIDs of the domain's accounts, sorted.
	ListAccounts(ctx context.Context, domain string) ([]string, error)

	// Roster returns the roster sorted by contact and its version (0 before
	// the first change).
	Roster(ctx context.Context, user string) (items []RosterItem, ver int64, err error)
	// RosterItem returns one item; ErrNotFound if absent.
	RosterItem(ctx context.Context, user, contact string) (RosterItem, error)
	// PutRosterItem adds or replaces an item and returns the new version.
	PutRosterItem(ctx context.Context, user string, it RosterItem) (ver int64, err error)
	// DeleteRosterItem removes an item and returns the new version;
	// ErrNotFound (and no version change) if absent.
	DeleteRosterItem(ctx context.Context, user, contact string) (ver int64, err error)
	// RosterVersion returns the current roster version.
	RosterVersion(ctx context.Context, user string) (int64, error)

	// PutSubRequest records a pending inbound subscription request,
	// replacing an existing one from the same contact.
	PutSubRequest(ctx context.Context, user string, r SubRequest) error
	// DeleteSubRequest forgets a request; no error when absent.
	DeleteSubRequest(ctx context.Context, user, contact string) error
	// SubRequests returns the pending requests in arrival order.
	SubRequests(ctx context.Context, user string) ([]SubRequest, error)

	// StoreOffline appends a stanza and returns its ID, which is greater
	// than the IDs issued to the user before and never reused; ErrQuota when
	// the user already has max messages (so max <= 0 stores nothing).
	StoreOffline(ctx context.Context, user, stanza string, max int) (int64, error)
	// OfflineMessages returns the user's messages in arrival order.
	OfflineMessages(ctx context.Context, user string) ([]OfflineMessage, error)
	// DeleteOffline removes the user's messages with these IDs; unknown IDs
	// are ignored.
	DeleteOffline(ctx context.Context, user string, ids []int64) error
	// CountOffline returns how many messages the user has.
	CountOffline(ctx context.Context, user string) (int, error)

	// GetXML returns a per-user XML blob: vcard-temp (key "vcard"), private
	// XML storage (key "private:<ns>"), anything else keyed; ErrNotFound if absent.
	GetXML(ctx context.Context, user, key string) (string, error)
	// PutXML stores or replaces a blob.
	PutXML(ctx context.Context, user, key, xml string) error
	// DeleteXML removes a blob; no error when absent.
	DeleteXML(ctx context.Context, user, key string) error

	// BlockList returns the user's blocked JIDs (XEP-0191), sorted.
	BlockList(ctx context.Context, user string) ([]string, error)
	// Block adds JIDs to the block list; already blocked ones are kept.
	Block(ctx context.Context, user string, jids []string) error
	// Unblock removes JIDs from the block list; empty jids unblocks all.
	Unblock(ctx context.Context, user string, jids []string) error

	// PutRoom creates a room or replaces its configuration and subject,
	// keeping its affiliations.
	PutRoom(ctx context.Context, r Room) error
	// DeleteRoom removes a room with its affiliations and its message
	// archive; ErrNotFound if absent.
	DeleteRoom(ctx context.Context, room string) error
	// Rooms returns the rooms of a MUC service domain, sorted by JID.
	Rooms(ctx context.Context, domain string) ([]Room, error)
	// SetRoomAffiliation adds or replaces a user's affiliation with a room;
	// an empty affiliation or "none" removes it. ErrNotFound if the room
	// does not exist.
	SetRoomAffiliation(ctx context.Context, room string, a RoomAffiliation) error
	// RoomAffiliations returns a room's affiliations sorted by JID.
	RoomAffiliations(ctx context.Context, room string) ([]RoomAffiliation, error)

	// AppendArchive adds messages, each to its User's archive, in one
	// transaction; ErrExists (and nothing written) if one of the IDs is
	// already in that archive.
	AppendArchive(ctx context.Context, msgs []ArchivedMessage) error
	// QueryArchive returns the messages of user's archive that q selects, in
	// ascending ID order, and more, true when q without Max would have
	// selected messages beyond those returned (in the direction of paging).
	QueryArchive(ctx context.Context, user string, q ArchiveQuery) (msgs []ArchivedMessage, more bool, err error)
	// CountArchive returns how many messages q selects, ignoring Max and Last.
	CountArchive(ctx context.Context, user string, q ArchiveQuery) (int, error)
	// HasArchived reports whether user's archive holds a message with this ID.
	HasArchived(ctx context.Context, user, id string) (bool, error)
	// PruneArchive deletes the messages of every archive stored before t and
	// returns how many went.
	PruneArchive(ctx context.Context, before time.Time) (int64, error)

	// Clearance returns the clearance expression (see core/label) set for a
	// principal: a user's bare JID, or a name such as "peer:example.net";
	// ErrNotFound if none is set. A user's is removed with the account.
	Clearance(ctx context.Context, principal string) (string, error)
	// SetClearance sets a principal's clearance expression; "" removes it.
	SetClearance(ctx context.Context, principal, expr string) error

	// QueueAdd adds items in one transaction (all or none) and returns
	// their IDs; ErrExists if an item or tombstone with the same non-empty
	// Key is already in the queue (nothing is added then). ID, Attempts,
	// Lease and LastError are ignored; Created zero means now.
	QueueAdd(ctx context.Context, items []QueueItem) ([]int64, error)
	// QueueDue returns items that may be claimed (Due at or before Now), in
	// delivery order, without claiming them. Only ID, Queue, Dest, Priority
	// and Due are filled in: QueueClaim returns the whole item.
	QueueDue(ctx context.Context, q QueueDueQuery) ([]QueueItem, error)
	// QueueClaim claims an item that is due at now: it sets its Lease to
	// lease, Due to until, and counts an attempt. It returns the claimed
	// item, or ErrNotFound if the item is gone or no longer due (someone
	// else claimed it).
	QueueClaim(ctx context.Context, queue string, id int64, lease string, now, until time.Time) (QueueItem, error)
	// QueueDone ends a claim for good in one transaction: the item becomes
	// a tombstone (its Key stays taken until QueuePrune) and follow-up
	// items are added, e.g. a delivery failure report. ErrNotFound if the
	// item is not claimed under lease (the claim lapsed and was taken over);
	// ErrExists, with nothing changed, if a follow-up's Key is taken.
	QueueDone(ctx context.Context, queue string, id int64, lease string, followUps []QueueItem) error
	// QueueRetry ends a claim and makes the item due again at due, with the
	// error text kept; ErrNotFound as for QueueDone.
	QueueRetry(ctx context.Context, queue string, id int64, lease string, due time.Time, lastError string) error
	// QueueRelease ends every claim of the queue whose lease starts with
	// prefix, making the items due at once (for a process that restarted
	// and knows its earlier incarnation's claims are dead); it returns how
	// many it released.
	QueueRelease(ctx context.Context, queue, prefix string) (int64, error)
	// QueueNextDue returns when the queue's next item becomes due (claimed
	// or not); ok is false when the queue holds no live item.
	QueueNextDue(ctx context.Context, queue string) (due time.Time, ok bool, err error)
	// QueueGet returns a live item; ErrNotFound if absent or done.
	QueueGet(ctx context.Context, queue string, id int64) (QueueItem, error)
	// QueueCount returns how many live items the queue holds.
	QueueCount(ctx context.Context, queue string) (int, error)
	// QueuePrune deletes the queue's tombstones made before t and returns
	// how many went.
	QueuePrune(ctx context.Context, queue string, before time.Time) (int64, error)

	// Close releases the store's resources.
	Close() error
}
