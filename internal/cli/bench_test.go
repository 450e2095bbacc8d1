package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/herd-project/herd/internal/benchkv"
	"github.com/herd-project/herd/internal/benchkv/etcdtest"
)

// runBench executes `herd bench ARGS...` and returns its standard output.
func runBench(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newBenchCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestBenchKVPutJSON(t *testing.T) {
	ep := etcdtest.Start(t)
	out, err := runBench(t, "kv", "put", "--endpoints", ep, "--clients", "4", "--conns", "2",
		"--total", "100", "--key-size", "8", "--val-size", "32", "--key-space-size", "100", "--sequential-keys", "--json")
	if err != nil {
		t.Fatalf("bench kv put: %v\n%s", err, out)
	}
	var res benchkv.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not a JSON result: %v\n%s", err, out)
	}
	want := benchkv.Params{Endpoints: []string{ep}, Clients: 4, Conns: 2, Total: 100, KeySize: 8, ValSize: 32, KeySpaceSize: 100, SequentialKeys: true}
	if got := res.Params; got.Clients != want.Clients || got.Conns != want.Conns || got.Total != want.Total ||
		got.KeySize != want.KeySize || got.ValSize != want.ValSize || got.KeySpaceSize != want.KeySpaceSize ||
		got.SequentialKeys != want.SequentialKeys || len(got.Endpoints) != 1 || got.Endpoints[0] != ep {
		t.Errorf("params = %+v, want %+v", got, want)
	}
	if res.Workload != "put" || res.Succeeded != 100 || res.Errors != 0 || res.Throughput <= 0 || res.Latency.P99 <= 0 {
		t.Errorf("result = %+v, want 100 successful puts", res)
	}
}

func TestBenchKVRange(t *testing.T) {
	ep := etcdtest.Start(t)
	for _, cons := range []string{"l", "s"} {
		out, err := runBench(t, "kv", "range", "--endpoints", ep, "--clients", "4", "--conns", "2",
			"--total", "100", "--consistency", cons, "--val-size", "64", "--json")
		if err != nil {
			t.Fatalf("bench kv range --consistency %s: %v\n%s", cons, err, out)
		}
		var res benchkv.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output is not a JSON result: %v\n%s", err, out)
		}
		p := res.Params
		if res.Workload != "range" || res.Succeeded != 100 || p.Consistency != cons || p.Key != benchkv.DefaultRangeKey || !p.WroteKey || p.ValSize != 64 {
			t.Errorf("--consistency %s: result = %+v", cons, res)
		}
	}

	// With KEY and END nothing is written and the range is read as is.
	out, err := runBench(t, "kv", "range", "a", "b", "--endpoints", ep, "--total", "10", "--consistency", "s")
	if err != nil {
		t.Fatalf("bench kv range a b: %v\n%s", err, out)
	}
	for _, want := range []string{`10 serializable reads of range ["a", "b")`, "10 sent, 10 succeeded, 0 failed", "p99.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchKVBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"kv", "range", "--consistency", "x"},
		{"kv", "range", "a", "b", "c"},
		{"kv", "put", "--clients", "0"},
		{"kv", "put", "--key-size", "1", "--key-space-size", "1000"},
		{"kv", "put", "extra"},
	} {
		if _, err := runBench(t, args...); err == nil {
			t.Errorf("bench %s succeeded, want an error", strings.Join(args, " "))
		}
	}
}

func TestBenchKVUnreachable(t *testing.T) {
	_, err := runBench(t, "kv", "put", "--endpoints", "127.0.0.1:1", "--total", "1", "--dial-timeout", "300ms")
	if err == nil {
		t.Fatal("bench kv put against a closed port succeeded, want an error")
	}
}

func TestBenchHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"kv", "--help"}, {"kv", "put", "--help"}, {"kv", "range", "--help"}} {
		out, err := runBench(t, args...)
		if err != nil {
			t.Fatalf("bench %s: %v", strings.Join(args, " "), err)
		}
		if !strings.Contains(out, "Usage:") {
			t.Errorf("bench %s printed no usage:\n%s", strings.Join(args, " "), out)
		}
	}
	out, _ := runBench(t, "kv", "put", "--help")
	for _, flag := range []string{"--endpoints", "--clients", "--conns", "--total", "--key-size", "--val-size", "--key-space-size", "--sequential-keys", "--json", "Examples:"} {
		if !strings.Contains(out, flag) {
			t.Errorf("put help lacks %s", flag)
		}
	}
	out, _ = runBench(t, "kv", "range", "--help")
	for _, flag := range []string{"--consistency", "--total", "--json", benchkv.DefaultRangeKey} {
		if !strings.Contains(out, flag) {
			t.Errorf("range help lacks %s", flag)
		}
	}
}
