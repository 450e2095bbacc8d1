package benchkv

import (
	"math"
	"slices"
	"time"
)

// Latencies holds every recorded request latency, sorted ascending. A run
// is at most a few hundred thousand requests, so keeping each sample (8 bytes
// apiece) is cheap and gives exact percentiles instead of bucket estimates.
type Latencies struct {
	sorted []time.Duration
	sum    time.Duration
}

// NewLatencies takes ownership of samples and sorts them.
func NewLatencies(samples []time.Duration) *Latencies {
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return &Latencies{sorted: samples, sum: sum}
}

// Len is the number of samples.
func (l *Latencies) Len() int { return len(l.sorted) }

// Min is the smallest sample, 0 if there are none.
func (l *Latencies) Min() time.Duration {
	if len(l.sorted) == 0 {
		return 0
	}
	return l.sorted[0]
}

// Max is the largest sample, 0 if there are none.
func (l *Latencies) Max() time.Duration {
	if len(l.sorted) == 0 {
		return 0
	}
	return l.sorted[len(l.sorted)-1]
}

// Mean is the arithmetic mean, 0 if there are no samples.
func (l *Latencies) Mean() time.Duration {
	if len(l.sorted) == 0 {
		return 0
	}
	return l.sum / time.Duration(len(l.sorted))
}

// Percentile returns the p-th percentile (0 < p <= 100) by the nearest-rank
// method: the smallest sample such that at least p% of all samples are less
// than or equal to it. It is always an observed value, never interpolated.
// It returns 0 if there are no samples.
func (l *Latencies) Percentile(p float64) time.Duration {
	n := len(l.sorted)
	if n == 0 {
		return 0
	}
	// Round before Ceil so that e.g. 99.9% of 1000 is rank 999, not 1000
	// because 99.9/100*1000 is 999.0000000000001 in floating point.
	rank := int(math.Ceil(math.Round(p/100*float64(n)*1e6) / 1e6))
	rank = max(1, min(rank, n))
	return l.sorted[rank-1]
}

// Bucket is one bar of a latency histogram: the samples in (previous
// bucket's UpperBound, UpperBound]; the first bucket also holds Min.
type Bucket struct {
	UpperBound time.Duration `json:"upper_bound_ns"`
	Count      int           `json:"count"`
}

// Histogram splits [Min, Max] into n equal-width buckets, as etcd's
// benchmark tool prints them. It returns nil if there are no samples or n < 1.
func (l *Latencies) Histogram(n int) []Bucket {
	if len(l.sorted) == 0 || n < 1 {
		return nil
	}
	lo, hi := l.Min(), l.Max()
	width := (hi - lo) / time.Duration(n)
	buckets := make([]Bucket, n)
	for i := range buckets {
		buckets[i].UpperBound = lo + width*time.Duration(i+1)
	}
	// Integer division can leave the last bound short of Max.
	buckets[n-1].UpperBound = hi
	b := 0
	for _, d := range l.sorted {
		for d > buckets[b].UpperBound {
			b++
		}
		buckets[b].Count++
	}
	return buckets
}
