package sis

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Reader reads framed primitives from a byte stream. It resynchronises on
// the 90 EB preamble after garbage and honours the size field across TCP
// segment boundaries.
type Reader struct {
	r       *bufio.Reader
	maxSize int
	skipped int64
}

// NewReader reads frames from r whose size field is at most maxSize (≤ 0
// or more than MaxSize: MaxSize).
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 || maxSize > MaxSize {
		maxSize = MaxSize
	}
	return &Reader{r: bufio.NewReaderSize(r, 4096), maxSize: maxSize}
}

// Skipped is the number of bytes dropped so far while looking for a preamble.
func (r *Reader) Skipped() int64 { return r.skipped }

// IsInvalid reports whether err from Read is an invalid primitive, after
// which the stream is still in step and reading may go on.
func IsInvalid(err error) bool {
	return errors.Is(err, ErrUnknownType) || errors.Is(err, ErrLength) || errors.Is(err, ErrField)
}

// Read returns the next primitive. An invalid primitive (IsInvalid) has
// been consumed whole; any other error is the stream's and final.
func (r *Reader) Read() (*Primitive, error) {
	for {
		b, err := r.r.Peek(headerLen)
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if b[0] != preamble0 || b[1] != preamble1 || b[2] != Version {
			r.r.Discard(1)
			r.skipped++
			continue
		}
		size := int(binary.BigEndian.Uint16(b[3:]))
		if size == 0 {
			// Not a frame: a size of zero has no type byte.
			r.r.Discard(1)
			r.skipped++
			continue
		}
		r.r.Discard(headerLen)
		if size > r.maxSize {
			if _, err := r.r.Discard(size); err != nil {
				return nil, fmt.Errorf("sis: discarding a %d-byte frame: %w", size, unexpected(err))
			}
			return nil, fmt.Errorf("sis: frame of %d bytes over the limit of %d: %w", size, r.maxSize, ErrLength)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r.r, body); err != nil {
			return nil, fmt.Errorf("sis: reading a %d-byte frame: %w", size, unexpected(err))
		}
		return Decode(body)
	}
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
