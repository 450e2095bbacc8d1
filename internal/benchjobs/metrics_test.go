package benchjobs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseStoreRequests(t *testing.T) {
	page := `# HELP herd_store_requests_total Requests...
# TYPE herd_store_requests_total counter
herd_store_requests_total{request="Range"} 1
herd_store_requests_total{request="Txn"} 42
herd_store_requests_total{request="WatchCreate"} 1
go_goroutines 12
`
	got, err := parseStoreRequests(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"Range": 1, "Txn": 42, "WatchCreate": 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got)\n%s", d)
	}
	if d := cmp.Diff(map[string]int64{"Txn": 2, "Put": 3}, Diff(got, map[string]int64{"Range": 1, "Txn": 44, "Put": 3, "WatchCreate": 1})); d != "" {
		t.Fatalf("Diff (-want +got)\n%s", d)
	}
}
