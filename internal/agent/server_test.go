package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/herd-project/herd/api"
)

// TestClientServerWatch checks the adapter against the documented wire
// format: newline-delimited api.WatchEvents, ERROR events as api.Errors.
func TestClientServerWatch(t *testing.T) {
	alloc := testAlloc(0, "u1", testNode)
	obj, err := json.Marshal(alloc)
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := json.Marshal(api.Error{Status: 410, Reason: api.ReasonGone, Message: "too old"})
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/watch/allocs" {
			http.NotFound(w, r)
			return
		}
		query = r.URL.RawQuery
		enc := json.NewEncoder(w)
		_ = enc.Encode(api.WatchEvent{Type: api.Added, ResourceVersion: "7", Object: obj})
		_ = enc.Encode(api.WatchEvent{Type: api.Bookmark, ResourceVersion: "9"})
		if r.URL.Query().Get("resourceVersion") == "1" {
			_ = enc.Encode(api.WatchEvent{Type: api.WatchError, Object: gone})
		}
	}))
	defer srv.Close()
	c, err := api.NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := ClientServer(c)

	stream, err := s.WatchAllocs(context.Background(), testNode, "5")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if query != "node=n1&resourceVersion=5" {
		t.Errorf("query %q", query)
	}
	ev, err := stream.Next()
	var got api.Allocation
	if err != nil || ev.Type != api.Added || ev.Decode(&got) != nil || got.UID != "u1" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	if ev, err := stream.Next(); err != nil || ev.Type != api.Bookmark || ev.ResourceVersion != "9" {
		t.Fatalf("second event %+v, %v", ev, err)
	}
	if _, err := stream.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}

	stream, err = s.WatchAllocs(context.Background(), testNode, "1")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for range 2 {
		if _, err := stream.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.Next(); !api.IsGone(err) {
		t.Fatalf("ERROR event: %v, want 410", err)
	}
}
