package benchkv

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/herd-project/herd/internal/benchkv/etcdtest"
)

func TestPutAgainstEtcd(t *testing.T) {
	ep := etcdtest.Start(t)
	res, err := Put(context.Background(), PutOptions{
		Options:        Options{Endpoints: []string{ep}, Clients: 4, Conns: 2, Total: 200},
		KeySize:        8,
		ValSize:        16,
		KeySpaceSize:   200,
		SequentialKeys: true,
	})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	checkResult(t, res, 200)

	// Sequential keys over a key space as large as the run write every key once.
	c := newClient(t, ep)
	resp, err := c.Get(context.Background(), "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count keys: %v", err)
	}
	if resp.Count != 200 {
		t.Errorf("store holds %d keys, want 200", resp.Count)
	}
	get, err := c.Get(context.Background(), string(Key(199, 8)))
	if err != nil {
		t.Fatalf("get key 199: %v", err)
	}
	if len(get.Kvs) != 1 || len(get.Kvs[0].Value) != 16 {
		t.Errorf("key 199: got %v, want one 16-byte value", get.Kvs)
	}
}

func TestRangeAgainstEtcd(t *testing.T) {
	ep := etcdtest.Start(t)
	for _, cons := range []Consistency{Linearizable, Serializable} {
		res, err := Range(context.Background(), RangeOptions{
			Options:     Options{Endpoints: []string{ep}, Clients: 3, Conns: 2, Total: 150},
			Key:         DefaultRangeKey,
			WriteKey:    true,
			ValSize:     32,
			Consistency: cons,
		})
		if err != nil {
			t.Fatalf("Range(%s): %v", cons, err)
		}
		checkResult(t, res, 150)
		if res.Params.Consistency != string(cons) || !res.Params.WroteKey {
			t.Errorf("Range(%s) params = %+v", cons, res.Params)
		}
	}
	c := newClient(t, ep)
	get, err := c.Get(context.Background(), DefaultRangeKey)
	if err != nil {
		t.Fatalf("get range key: %v", err)
	}
	if len(get.Kvs) != 1 || len(get.Kvs[0].Value) != 32 {
		t.Errorf("range key: got %v, want one 32-byte value", get.Kvs)
	}
}

func TestRateLimit(t *testing.T) {
	ep := etcdtest.Start(t)
	// 20 requests at 100/s take at least 19 intervals of 10ms.
	res, err := Range(context.Background(), RangeOptions{
		Options:     Options{Endpoints: []string{ep}, Clients: 4, Conns: 1, Total: 20, Rate: 100},
		Key:         "absent",
		Consistency: Serializable,
	})
	if err != nil {
		t.Fatalf("Range: %v", err)
	}
	checkResult(t, res, 20)
	if res.TotalSeconds < 0.18 {
		t.Errorf("20 requests at 100/s took %.3fs, want at least 0.19s", res.TotalSeconds)
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	// Nothing listens on port 1; the warm-up read must fail fast.
	_, err := Put(context.Background(), PutOptions{
		Options:      Options{Endpoints: []string{"127.0.0.1:1"}, Clients: 1, Conns: 1, Total: 1, DialTimeout: 300 * time.Millisecond},
		KeySize:      8,
		KeySpaceSize: 1,
	})
	if err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Errorf("Put to a closed port: err = %v, want a warm-up error", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	base := Options{Endpoints: []string{"127.0.0.1:2379"}, Clients: 1, Conns: 1, Total: 1}
	for name, o := range map[string]PutOptions{
		"no clients":     {Options: Options{Endpoints: base.Endpoints, Conns: 1, Total: 1}, KeySize: 8, KeySpaceSize: 1},
		"no endpoints":   {Options: Options{Clients: 1, Conns: 1, Total: 1}, KeySize: 8, KeySpaceSize: 1},
		"key too short":  {Options: base, KeySize: 1, KeySpaceSize: 1000},
		"no key space":   {Options: base, KeySize: 8},
		"negative value": {Options: base, KeySize: 8, KeySpaceSize: 1, ValSize: -1},
	} {
		if _, err := Put(context.Background(), o); err == nil {
			t.Errorf("%s: Put succeeded, want an error", name)
		}
	}
	if _, err := Range(context.Background(), RangeOptions{Options: base, Key: "k", Consistency: "x"}); err == nil {
		t.Error("Range with consistency x succeeded, want an error")
	}
}

func TestReportFormats(t *testing.T) {
	ep := etcdtest.Start(t)
	res, err := Put(context.Background(), PutOptions{
		Options:      Options{Endpoints: []string{ep}, Clients: 2, Conns: 1, Total: 50},
		KeySize:      8,
		ValSize:      8,
		KeySpaceSize: 10,
	})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	var js bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON result does not parse: %v\n%s", err, js.String())
	}
	lat, _ := back["latency_ms"].(map[string]any)
	for _, k := range []string{"min", "avg", "p50", "p90", "p99", "p99_9", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("JSON latency_ms lacks %q: %s", k, js.String())
		}
	}
	for _, k := range []string{"workload", "params", "requests", "succeeded", "errors", "total_seconds", "requests_per_second"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON result lacks %q", k)
		}
	}
	var txt bytes.Buffer
	if err := res.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"put benchmark against", "Throughput:", "p99.9", "50 sent, 50 succeeded, 0 failed"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, txt.String())
		}
	}
}

func checkResult(t *testing.T, res *Result, total int) {
	t.Helper()
	if res.Requests != total || res.Succeeded != total || res.Errors != 0 {
		t.Fatalf("requests %d, succeeded %d, errors %d (%v); want %d, %d, 0",
			res.Requests, res.Succeeded, res.Errors, res.ErrorCounts, total, total)
	}
	l := res.Latency
	if !(l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latencies out of order: %+v", l)
	}
	if l.Avg < l.Min || l.Avg > l.Max {
		t.Errorf("average %v outside [min, max]: %+v", l.Avg, l)
	}
	if res.TotalSeconds <= 0 || res.Throughput <= 0 {
		t.Errorf("total %vs, throughput %v req/s; want both positive", res.TotalSeconds, res.Throughput)
	}
	sum := 0
	for _, h := range res.Histogram {
		sum += h.Count
	}
	if sum != total {
		t.Errorf("histogram holds %d requests, want %d", sum, total)
	}
}

func newClient(t *testing.T, ep string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
