package relay

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// deflateLevel favours ratio over CPU: the link, not the processor, is
// the bottleneck at HF rates.
const deflateLevel = flate.BestCompression

// frameSlack is what raw DEFLATE may add to incompressible input of up to
// one stored block (header, final empty block, padding), with margin.
const frameSlack = 64

var (
	errStreamBroken = errors.New("brlink: link DEFLATE stream broken until the peer resets it")
	errStreamGap    = errors.New("brlink: link DEFLATE stream has a gap")
	errInflateLimit = errors.New("brlink: decompressed size over the limit")
	// errStale: an item of a stream the peer has since restarted, still
	// arriving from the modem's queue; its item is sent again.
	errStale = errors.New("brlink: item of an earlier link stream")
)

// frameDeflater compresses items for CompressFrame: every chunk is its own
// raw DEFLATE stream, so each frame decodes alone (lossy broadcast links).
type frameDeflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

func (d *frameDeflater) compress(p []byte) ([]byte, error) {
	d.buf.Reset()
	if d.w == nil {
		w, err := flate.NewWriter(&d.buf, deflateLevel)
		if err != nil {
			return nil, fmt.Errorf("brlink: deflate: %w", err)
		}
		d.w = w
	} else {
		d.w.Reset(&d.buf)
	}
	if _, err := d.w.Write(p); err != nil {
		return nil, fmt.Errorf("brlink: deflate: %w", err)
	}
	if err := d.w.Close(); err != nil {
		return nil, fmt.Errorf("brlink: deflate: %w", err)
	}
	return bytes.Clone(d.buf.Bytes()), nil
}

// chunks cuts p into pieces whose compressed form each fits room bytes,
// as large as the data's compressibility allows.
func (d *frameDeflater) chunks(p []byte, room int) ([][]byte, error) {
	floor := room - frameSlack // incompressible input this long always fits
	if floor < 1 {
		return nil, fmt.Errorf("brlink: %d bytes of room per frame is too little for DEFLATE: %w", room, brlink.ErrInvalid)
	}
	var out [][]byte
	guess := 8 * room
	for pos := 0; pos < len(p) || len(out) == 0; {
		n := min(len(p)-pos, guess)
		for {
			c, err := d.compress(p[pos : pos+n])
			if err != nil {
				return nil, err
			}
			if len(c) <= room {
				out = append(out, c)
				pos += n
				// Aim the next chunk at the ratio just seen.
				guess = max(floor, n*room/max(1, len(c))*15/16)
				break
			}
			if n <= floor {
				return nil, fmt.Errorf("brlink: %d bytes deflated to %d, over %d: %w", n, len(c), room, brlink.ErrInvalid)
			}
			n = max(floor, n*room/len(c)*15/16)
		}
	}
	return out, nil
}

// inflateFrame decompresses one CompressFrame payload, refusing output
// over limit bytes.
func inflateFrame(p []byte, limit int) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(p))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("brlink: inflate frame: %w", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("brlink: inflate frame: %w (%d bytes)", errInflateLimit, limit)
	}
	return out, nil
}

// linkDeflater compresses items for CompressLink: one DEFLATE stream per
// precedence, because items of one precedence leave in order while a
// higher precedence may cut in between the segments of a lower one. Each
// item is sync flushed and framed as
//
//	epoch (1) | sequence in the stream (2, big-endian) | raw length (uvarint) | DEFLATE bytes
//
// A new epoch tells the receiver that every stream restarted empty, so no
// handshake is needed to stay in step; the sequence exposes a lost item,
// which would otherwise corrupt what follows silently.
type linkDeflater struct {
	epoch uint8
	seq   [brlink.Override + 1]uint16
	w     [brlink.Override + 1]*flate.Writer
	buf   bytes.Buffer
}

// reset starts every stream afresh under a new epoch.
func (d *linkDeflater) reset() {
	d.epoch++
	for i := range d.w {
		d.seq[i] = 0
		if d.w[i] != nil {
			d.w[i].Reset(&d.buf)
		}
	}
}

func (d *linkDeflater) compress(prec brlink.Precedence, p []byte) ([]byte, error) {
	prec = min(prec, brlink.Override)
	d.buf.Reset()
	d.buf.WriteByte(d.epoch)
	d.buf.Write(binary.BigEndian.AppendUint16(nil, d.seq[prec]))
	d.buf.Write(binary.AppendUvarint(nil, uint64(len(p))))
	if d.w[prec] == nil {
		w, err := flate.NewWriter(&d.buf, deflateLevel)
		if err != nil {
			return nil, fmt.Errorf("brlink: deflate: %w", err)
		}
		d.w[prec] = w
	}
	if _, err := d.w[prec].Write(p); err != nil {
		return nil, fmt.Errorf("brlink: deflate: %w", err)
	}
	if err := d.w[prec].Flush(); err != nil {
		return nil, fmt.Errorf("brlink: deflate: %w", err)
	}
	d.seq[prec]++
	return bytes.Clone(d.buf.Bytes()), nil
}

// linkInflater undoes linkDeflater, one stream per precedence.
type linkInflater struct {
	limit   int
	streams [brlink.Override + 1]inStream
}

type inStream struct {
	started bool
	epoch   uint8
	// retired are the epochs this stream has moved past: frames of them
	// can still be in the modem's queue (16 KiB at 2,400 bit/s is a
	// minute of air), and joining them would break the stream again.
	retired []retiredEpoch
	next    uint16
	broken  bool
	in      feeder
	r       io.ReadCloser
}

// forget drops the streams' state: the next item of each starts one.
func (d *linkInflater) forget() {
	for i := range d.streams {
		d.streams[i].retire()
		d.streams[i].started = false
	}
}

// maxRetired bounds the epochs a stream remembers.
const maxRetired = 8

// retiredEpoch is a stream we moved past, and the sequence it had reached.
type retiredEpoch struct {
	epoch uint8
	next  uint16
}

func (s *inStream) retire() {
	if !s.started {
		return
	}
	s.retired = slices.DeleteFunc(s.retired, func(r retiredEpoch) bool { return r.epoch == s.epoch })
	if len(s.retired) == maxRetired {
		s.retired = s.retired[1:]
	}
	s.retired = append(s.retired, retiredEpoch{s.epoch, s.next})
}

// stale says whether an item belongs to a stream we moved past: its
// epoch was retired and its sequence continues that stream. A lower
// sequence is a new stream that drew the same epoch (a restarted peer
// picks one at random), which must not be refused for ever.
func (s *inStream) stale(epoch uint8, seq uint16) bool {
	for _, r := range s.retired {
		if r.epoch == epoch {
			return r.next > 0 && seq >= r.next
		}
	}
	return false
}

func (d *linkInflater) inflate(prec brlink.Precedence, p []byte) ([]byte, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("brlink: link DEFLATE item of %d bytes: %w", len(p), brlink.ErrShort)
	}
	s := &d.streams[min(prec, brlink.Override)]
	epoch, seq := p[0], binary.BigEndian.Uint16(p[1:])
	n, k := binary.Uvarint(p[3:])
	if k <= 0 {
		return nil, fmt.Errorf("brlink: link DEFLATE length: %w", brlink.ErrInvalid)
	}
	if (!s.started || epoch != s.epoch) && s.stale(epoch, seq) {
		return nil, errStale
	}
	if !s.started || epoch != s.epoch {
		s.retire()
		s.retired = slices.DeleteFunc(s.retired, func(r retiredEpoch) bool { return r.epoch == epoch })
		// The sender restarted its streams. Joining at a later sequence
		// is safe: a stream's suffix decodes or fails, never silently
		// wrong, as back-references cannot reach before what we hold.
		s.started, s.epoch, s.next, s.broken = true, epoch, seq, false
		s.in.b, s.in.off = s.in.b[:0], 0
		if s.r == nil {
			s.r = flate.NewReader(&s.in)
		} else if err := s.r.(flate.Resetter).Reset(&s.in, nil); err != nil {
			return nil, fmt.Errorf("brlink: inflate reset: %w", err)
		}
	}
	switch {
	case s.broken:
		return nil, errStreamBroken
	case seq != s.next:
		s.broken = true
		return nil, fmt.Errorf("%w: item %d, expected %d", errStreamGap, seq, s.next)
	case n > uint64(d.limit):
		// Skipping the bytes would leave the stream without them.
		s.broken = true
		return nil, fmt.Errorf("brlink: link DEFLATE item of %d bytes: %w (%d)", n, errInflateLimit, d.limit)
	}
	s.next++
	s.in.push(p[3+k:])
	// Read exactly the announced length: reading on would ask for the
	// next item's bytes, which are not here yet, and end the stream.
	out := make([]byte, n)
	if _, err := io.ReadFull(s.r, out); err != nil {
		s.broken = true
		return nil, fmt.Errorf("brlink: inflate link item: %w", err)
	}
	return out, nil
}

// feeder is the input of a link stream: the bytes of items as they
// complete, read one at a time so the decompressor takes no more than it
// needs.
type feeder struct {
	b   []byte
	off int
}

func (f *feeder) push(p []byte) {
	// What is left over is at most the end of the previous item's flush.
	f.b = append(f.b[:copy(f.b, f.b[f.off:])], p...)
	f.off = 0
}

func (f *feeder) ReadByte() (byte, error) {
	if f.off >= len(f.b) {
		return 0, io.EOF
	}
	c := f.b[f.off]
	f.off++
	return c, nil
}

func (f *feeder) Read(p []byte) (int, error) {
	if f.off >= len(f.b) {
		return 0, io.EOF
	}
	n := copy(p, f.b[f.off:])
	f.off += n
	return n, nil
}
