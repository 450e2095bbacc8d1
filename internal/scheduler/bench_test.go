package scheduler

import "testing"

// BenchmarkPlace places 100 allocations over 1000 nodes holding 5000
// allocations.
func BenchmarkPlace(b *testing.B) {
	for _, strategy := range []Strategy{Spread, Binpack} {
		b.Run(string(strategy), func(b *testing.B) {
			req := syntheticRequest(100, 1000, 5000, strategy)
			b.ReportAllocs()
			for b.Loop() {
				Place(req)
			}
		})
	}
}
