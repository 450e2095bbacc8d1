package benchkv

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	// 1..1000 ms in random order: the p-th percentile is exactly p*10 ms.
	samples := make([]time.Duration, 1000)
	for i := range samples {
		samples[i] = time.Duration(i+1) * time.Millisecond
	}
	rand.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
	l := NewLatencies(samples)

	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{0.05, 1 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
		{50, 500 * time.Millisecond},
		{90, 900 * time.Millisecond},
		{99, 990 * time.Millisecond},
		{99.9, 999 * time.Millisecond},
		{99.95, 1000 * time.Millisecond},
		{100, 1000 * time.Millisecond},
	} {
		if got := l.Percentile(tc.p); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got, want := l.Min(), time.Millisecond; got != want {
		t.Errorf("Min = %v, want %v", got, want)
	}
	if got, want := l.Max(), time.Second; got != want {
		t.Errorf("Max = %v, want %v", got, want)
	}
	if got, want := l.Mean(), 500500*time.Microsecond; got != want {
		t.Errorf("Mean = %v, want %v", got, want)
	}
}

func TestPercentileSmallSets(t *testing.T) {
	l := NewLatencies([]time.Duration{30, 10, 20})
	// Nearest rank of p over 3 samples: ceil(3p/100).
	for p, want := range map[float64]time.Duration{1: 10, 33.3: 10, 33.4: 20, 50: 20, 66.7: 30, 99.9: 30} {
		if got := l.Percentile(p); got != want {
			t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
		}
	}
	one := NewLatencies([]time.Duration{7})
	for _, p := range []float64{50, 99.9} {
		if got := one.Percentile(p); got != 7 {
			t.Errorf("single sample: Percentile(%v) = %v, want 7", p, got)
		}
	}
}

func TestEmptyLatencies(t *testing.T) {
	l := NewLatencies(nil)
	if l.Len() != 0 || l.Min() != 0 || l.Max() != 0 || l.Mean() != 0 || l.Percentile(99) != 0 {
		t.Errorf("empty latencies: got len %d min %v max %v mean %v p99 %v, want all zero",
			l.Len(), l.Min(), l.Max(), l.Mean(), l.Percentile(99))
	}
	if h := l.Histogram(10); h != nil {
		t.Errorf("empty latencies: Histogram = %v, want nil", h)
	}
}

func TestHistogram(t *testing.T) {
	// 10..100 in steps of 1: 91 samples over [10, 100], 3 buckets of width 30.
	var samples []time.Duration
	for d := time.Duration(10); d <= 100; d++ {
		samples = append(samples, d)
	}
	h := NewLatencies(samples).Histogram(3)
	want := []Bucket{{40, 31}, {70, 30}, {100, 30}}
	if len(h) != len(want) {
		t.Fatalf("Histogram(3) = %v, want %v", h, want)
	}
	for i := range want {
		if h[i] != want[i] {
			t.Errorf("bucket %d = %+v, want %+v", i, h[i], want[i])
		}
	}
}

func TestHistogramCountsEverySample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	samples := make([]time.Duration, 5000)
	for i := range samples {
		samples[i] = time.Duration(r.ExpFloat64() * float64(time.Millisecond))
	}
	l := NewLatencies(samples)
	h := l.Histogram(10)
	sum := 0
	for i, b := range h {
		sum += b.Count
		if i > 0 && b.UpperBound < h[i-1].UpperBound {
			t.Errorf("bucket %d bound %v below previous %v", i, b.UpperBound, h[i-1].UpperBound)
		}
	}
	if sum != len(samples) {
		t.Errorf("histogram holds %d samples, want %d", sum, len(samples))
	}
	if last := h[len(h)-1].UpperBound; last != l.Max() {
		t.Errorf("last bound %v, want Max %v", last, l.Max())
	}
}

func TestHistogramAllEqual(t *testing.T) {
	h := NewLatencies([]time.Duration{5, 5, 5}).Histogram(4)
	total := 0
	for _, b := range h {
		total += b.Count
	}
	if total != 3 || h[0].Count != 3 {
		t.Errorf("Histogram of equal samples = %v, want all 3 in the first bucket", h)
	}
}
