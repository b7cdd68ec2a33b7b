package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Log-linear buckets: values below 2^(subBits+1) ns are exact, larger ones
// fall in one of 2^subBits buckets per power of two (≤1.6% width), which
// bounds memory while keeping percentiles precise at any latency.
const (
	subBits    = 6
	subCount   = 1 << subBits
	maxShift   = 30 // values up to 2^37 ns (≈137 s); larger ones saturate
	numBuckets = subCount*maxShift + 2*subCount
	histShards = 8 // spreads atomic increments of concurrent readers
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	shift := bits.Len64(u) - (subBits + 1)
	if shift <= 0 {
		return int(u)
	}
	if shift > maxShift {
		return numBuckets - 1
	}
	return subCount*shift + int(u>>shift)
}

// bucketValue returns the midpoint of bucket i.
func bucketValue(i int) int64 {
	if i < 2*subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	low := int64(i-subCount*shift) << shift
	return low + (int64(1)<<shift)/2
}

// histogram is a lock-free latency histogram shared by all receivers.
type histogram struct {
	shards [histShards][numBuckets]atomic.Uint64
}

func (h *histogram) record(shard int, d int64) {
	h.shards[shard%histShards][bucketOf(d)].Add(1)
}

// snapshot merges the shards into plain counts.
func (h *histogram) snapshot() []uint64 {
	out := make([]uint64, numBuckets)
	for s := range h.shards {
		for i := range h.shards[s] {
			out[i] += h.shards[s][i].Load()
		}
	}
	return out
}

// quantile returns the q-quantile (0 < q ≤ 1) of the bucket counts, or 0
// when empty.
func quantile(counts []uint64, q float64) time.Duration {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(len(counts) - 1))
}
