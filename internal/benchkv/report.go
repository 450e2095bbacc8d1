package benchkv

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Params records what a run was asked to do.
type Params struct {
	Endpoints      []string `json:"endpoints"`
	Clients        int      `json:"clients"`
	Conns          int      `json:"conns"`
	Total          int      `json:"total"`
	Rate           int      `json:"rate,omitempty"`
	KeySize        int      `json:"key_size,omitempty"`
	ValSize        int      `json:"val_size,omitempty"`
	KeySpaceSize   int64    `json:"key_space_size,omitempty"`
	SequentialKeys bool     `json:"sequential_keys,omitempty"`
	Key            string   `json:"key,omitempty"`
	End            string   `json:"end,omitempty"`
	WroteKey       bool     `json:"wrote_key,omitempty"`
	Consistency    string   `json:"consistency,omitempty"`
}

// LatencySummary is in milliseconds.
type LatencySummary struct {
	Min  float64 `json:"min"`
	Avg  float64 `json:"avg"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// HistogramBar is one bucket of Result.Histogram.
type HistogramBar struct {
	// UpperMs is the bucket's inclusive upper bound in milliseconds.
	UpperMs float64 `json:"upper_ms"`
	Count   int     `json:"count"`
}

// Result is the outcome of one run. Latencies and throughput cover
// successful requests only, as in etcd's benchmark tool; failed ones are
// counted in Errors.
type Result struct {
	Workload string `json:"workload"`
	Params   Params `json:"params"`
	// Requests is the number of requests sent (Total unless interrupted).
	Requests  int `json:"requests"`
	Succeeded int `json:"succeeded"`
	Errors    int `json:"errors"`
	// ErrorCounts maps each distinct error message to its count.
	ErrorCounts map[string]int `json:"error_counts,omitempty"`
	// TotalSeconds is the wall time from the first request to the last
	// response.
	TotalSeconds float64 `json:"total_seconds"`
	// Throughput is successful requests per second of TotalSeconds.
	Throughput float64        `json:"requests_per_second"`
	Latency    LatencySummary `json:"latency_ms"`
	Histogram  []HistogramBar `json:"histogram,omitempty"`
}

// histogramBuckets is how many bars the report shows, as in etcd's tool.
const histogramBuckets = 10

func newResult(elapsed time.Duration, workers []worker) *Result {
	var all []time.Duration
	res := &Result{TotalSeconds: elapsed.Seconds()}
	for _, w := range workers {
		all = append(all, w.lats...)
		res.Requests += w.sent
		for msg, n := range w.errs {
			if res.ErrorCounts == nil {
				res.ErrorCounts = map[string]int{}
			}
			res.ErrorCounts[msg] += n
			res.Errors += n
		}
	}
	lats := NewLatencies(all)
	res.Succeeded = lats.Len()
	if elapsed > 0 {
		res.Throughput = float64(res.Succeeded) / elapsed.Seconds()
	}
	res.Latency = LatencySummary{
		Min:  ms(lats.Min()),
		Avg:  ms(lats.Mean()),
		P50:  ms(lats.Percentile(50)),
		P90:  ms(lats.Percentile(90)),
		P99:  ms(lats.Percentile(99)),
		P999: ms(lats.Percentile(99.9)),
		Max:  ms(lats.Max()),
	}
	for _, b := range lats.Histogram(histogramBuckets) {
		res.Histogram = append(res.Histogram, HistogramBar{UpperMs: ms(b.UpperBound), Count: b.Count})
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteJSON writes r as one indented JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON result: %w", err)
	}
	return nil
}

// WriteText writes r for people to read.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	p := r.Params
	fmt.Fprintf(&b, "%s benchmark against %s: %d clients over %d connections", r.Workload, strings.Join(p.Endpoints, ","), p.Clients, p.Conns)
	if p.Rate > 0 {
		fmt.Fprintf(&b, ", at most %d req/s", p.Rate)
	}
	b.WriteString("\n")
	switch r.Workload {
	case "put":
		order := "random"
		if p.SequentialKeys {
			order = "sequential"
		}
		fmt.Fprintf(&b, "  %d puts, %d-byte keys (%s, key space %d), %d-byte values\n", p.Total, p.KeySize, order, p.KeySpaceSize, p.ValSize)
	case "range":
		what := fmt.Sprintf("key %q", p.Key)
		if p.End != "" {
			what = fmt.Sprintf("range [%q, %q)", p.Key, p.End)
		}
		cons := "linearizable"
		if p.Consistency == string(Serializable) {
			cons = "serializable"
		}
		fmt.Fprintf(&b, "  %d %s reads of %s", p.Total, cons, what)
		if p.WroteKey {
			fmt.Fprintf(&b, " (written beforehand with a %d-byte value)", p.ValSize)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nTotal time:   %.4f s\n", r.TotalSeconds)
	fmt.Fprintf(&b, "Throughput:   %.1f req/s\n", r.Throughput)
	fmt.Fprintf(&b, "Requests:     %d sent, %d succeeded, %d failed\n", r.Requests, r.Succeeded, r.Errors)
	l := r.Latency
	fmt.Fprintf(&b, "Latency (ms): min %.3f  avg %.3f  max %.3f\n", l.Min, l.Avg, l.Max)
	fmt.Fprintf(&b, "              p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f\n", l.P50, l.P90, l.P99, l.P999)
	if len(r.Histogram) > 0 {
		b.WriteString("\nLatency histogram (ms, upper bound [count]):\n")
		most := 0
		for _, h := range r.Histogram {
			most = max(most, h.Count)
		}
		for _, h := range r.Histogram {
			bar := 0
			if most > 0 {
				bar = h.Count * 40 / most
			}
			fmt.Fprintf(&b, "  %10.3f [%d]\t|%s\n", h.UpperMs, h.Count, strings.Repeat("∎", bar))
		}
	}
	if len(r.ErrorCounts) > 0 {
		b.WriteString("\nErrors:\n")
		for _, msg := range slices.Sorted(maps.Keys(r.ErrorCounts)) {
			fmt.Fprintf(&b, "  [%d]\t%s\n", r.ErrorCounts[msg], msg)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
