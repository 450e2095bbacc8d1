package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// etcdctlTimeout bounds one etcdctl call; calls slower than slowEtcdctl
// are logged.
const (
	etcdctlTimeout = 30 * time.Second
	slowEtcdctl    = 2 * time.Second
)

// etcdctl runs one etcdctl binary against one endpoint.
type etcdctl struct {
	t        *testing.T
	bin      string
	endpoint string
}

func (c etcdctl) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--endpoints", c.endpoint}, args...)...)
	// etcdctl 3.4 needs ETCDCTL_API=3; the other ETCDCTL_ variables of the
	// environment must not leak into the test.
	env := []string{"ETCDCTL_API=3"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

// exec runs etcdctl with stdin and returns its stdout and error.
func (c etcdctl) exec(stdin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	// A slow call passes but is worth a look: etcdctl retries quietly.
	if d := time.Since(start); d > slowEtcdctl {
		c.t.Logf("slow: etcdctl %s took %v; stderr:\n%s", strings.Join(args, " "), d.Round(time.Millisecond), stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// run runs etcdctl and fails the test if it fails.
func (c etcdctl) run(args ...string) string {
	c.t.Helper()
	return c.runStdin("", args...)
}

// runStdin is run with stdin.
func (c etcdctl) runStdin(stdin string, args ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.exec(stdin, args...)
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// runFail runs etcdctl, expects it to fail, and returns its stderr.
func (c etcdctl) runFail(args ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.exec("", args...)
	if err == nil {
		c.t.Fatalf("etcdctl %s succeeded, want an error; stdout:\n%s", strings.Join(args, " "), stdout)
	}
	return stderr
}

// expect runs etcdctl and compares its non-empty output lines with want.
func (c etcdctl) expect(want []string, args ...string) {
	c.t.Helper()
	c.expectStdin("", want, args...)
}

func (c etcdctl) expectStdin(stdin string, want []string, args ...string) {
	c.t.Helper()
	got := lines(c.runStdin(stdin, args...))
	if !slices.Equal(got, want) {
		c.t.Errorf("etcdctl %s:\ngot  %q\nwant %q", strings.Join(args, " "), got, want)
	}
}

// putRev puts key=value and returns the revision of the put.
func (c etcdctl) putRev(key, value string) int64 {
	c.t.Helper()
	var resp struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	out := c.run("put", "-w", "json", key, value)
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Header.Revision == 0 {
		c.t.Fatalf("etcdctl put -w json: no revision in %q (%v)", out, err)
	}
	return resp.Header.Revision
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimRight(l, "\r\n"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// etcdctlBinaries lists the etcdctl binaries to test with: the one built
// from the etcd module and, when installed, the system's (Debian ships 3.4).
func etcdctlBinaries(t *testing.T) map[string]string {
	bins := map[string]string{}
	v, err := etcdctlVersion(etcdctlBin)
	if err != nil {
		t.Fatal(err)
	}
	bins["etcdctl-"+v] = etcdctlBin
	path, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Logf("no etcdctl on PATH; testing only with etcdctl %s built from the etcd module", v)
		return bins
	}
	sys, err := etcdctlVersion(path)
	if err != nil {
		t.Fatal(err)
	}
	bins["etcdctl-"+sys+"-system"] = path
	return bins
}

// TestEtcdctl runs etcdctl's commands against herd store and checks their
// output as a user would see it.
func TestEtcdctl(t *testing.T) {
	bins := etcdctlBinaries(t)
	for _, name := range slices.Sorted(maps.Keys(bins)) {
		t.Run(name, func(t *testing.T) {
			p := startHerd(t, t.TempDir())
			c := etcdctl{t: t, bin: bins[name], endpoint: p.endpoint}
			// The steps share one store and run in order; each uses its
			// own keys. Compaction and snapshot come last.
			steps := []struct {
				name string
				fn   func(t *testing.T, c etcdctl)
			}{
				{"put and get", testPutGet},
				{"del", testDel},
				{"txn", testTxn},
				{"watch", testWatch},
				{"lease", testLease},
				{"endpoint", testEndpoint},
				{"compaction", testCompaction},
				{"snapshot save", testSnapshot},
			}
			for _, s := range steps {
				t.Run(s.name, func(t *testing.T) {
					c.t = t
					s.fn(t, c)
				})
			}
		})
	}
}

func testPutGet(t *testing.T, c etcdctl) {
	c.expect([]string{"OK"}, "put", "kv/b", "2")
	c.expect([]string{"OK"}, "put", "kv/a", "1")
	c.expect([]string{"OK"}, "put", "kv/c", "3")
	c.expect([]string{"OK"}, "put", "kv0", "outside")

	c.expect([]string{"kv/a", "1"}, "get", "kv/a")
	c.expect(nil, "get", "kv/missing")
	c.expect([]string{"kv/a", "1", "kv/b", "2", "kv/c", "3"}, "get", "--prefix", "kv/")
	c.expect([]string{"kv/a", "1", "kv/b", "2"}, "get", "--prefix", "--limit", "2", "kv/")
	c.expect([]string{"kv/c", "3", "kv/b", "2", "kv/a", "1"}, "get", "--prefix", "--sort-by", "KEY", "--order", "DESCEND", "kv/")
	c.expect([]string{"kv/c", "3", "kv/b", "2"}, "get", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND", "--limit", "2", "kv/")
	c.expect([]string{"kv/b", "2", "kv/a", "1", "kv/c", "3"}, "get", "--prefix", "--sort-by", "CREATE", "--order", "ASCEND", "kv/")
	c.expect([]string{"kv/a", "kv/b"}, "get", "--from-key", "--keys-only", "--limit", "2", "kv/a")
	c.expect([]string{"kv/a", "1", "kv/b", "2"}, "get", "kv/a", "kv/c") // [kv/a, kv/c)
	c.expect([]string{"2"}, "get", "--print-value-only", "kv/b")

	first := c.putRev("kv/rev", "first")
	second := c.putRev("kv/rev", "second")
	if second != first+1 {
		t.Errorf("second put at revision %d, want %d", second, first+1)
	}
	c.expect([]string{"kv/rev", "first"}, "get", "--rev", strconv.FormatInt(first, 10), "kv/rev")
	c.expect([]string{"kv/rev", "second"}, "get", "--rev", strconv.FormatInt(second, 10), "kv/rev")
	c.expect(nil, "get", "--rev", strconv.FormatInt(first-1, 10), "kv/rev")

	// The JSON output carries the key's versions and revisions.
	var resp struct {
		Count int64 `json:"count"`
		KVs   []struct {
			CreateRevision int64 `json:"create_revision"`
			ModRevision    int64 `json:"mod_revision"`
			Version        int64 `json:"version"`
		} `json:"kvs"`
	}
	out := c.run("get", "-w", "json", "kv/rev")
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("get -w json: %v\n%s", err, out)
	}
	if resp.Count != 1 || len(resp.KVs) != 1 || resp.KVs[0].CreateRevision != first ||
		resp.KVs[0].ModRevision != second || resp.KVs[0].Version != 2 {
		t.Errorf("get -w json kv/rev = %s, want create %d, mod %d, version 2", out, first, second)
	}
}

func testDel(t *testing.T, c etcdctl) {
	for _, k := range []string{"del/a", "del/b", "del/c", "del/d"} {
		c.run("put", k, "v-"+k)
	}
	c.expect([]string{"1"}, "del", "del/a")
	c.expect([]string{"0"}, "del", "del/a")
	c.expect([]string{"1", "del/b", "v-del/b"}, "del", "--prev-kv", "del/b")
	c.expect([]string{"2"}, "del", "--prefix", "del/")
	c.expect(nil, "get", "--prefix", "del/")
}

func testTxn(t *testing.T, c etcdctl) {
	// etcdctl reads the compares, the success ops and the failure ops from
	// stdin, each block ended by an empty line.
	create := `mod("txn/k") = "0"

put txn/k created

get txn/k

`
	c.expectStdin(create, []string{"SUCCESS", "OK"}, "txn")
	c.expectStdin(create, []string{"FAILURE", "txn/k", "created"}, "txn")

	update := `value("txn/k") = "created"
version("txn/k") = "1"

put txn/k updated
put txn/other x
get txn/ --prefix

del txn/k

`
	c.expectStdin(update, []string{"SUCCESS", "OK", "OK", "txn/k", "updated", "txn/other", "x"}, "txn")
	c.expectStdin(update, []string{"FAILURE", "1"}, "txn")
	c.expect([]string{"txn/other", "x"}, "get", "--prefix", "txn/")
}

func testWatch(t *testing.T, c etcdctl) {
	first := c.putRev("watch/a", "1")
	c.run("put", "watch/b", "2")

	// Watch from the first revision: history, then live events.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, "watch", "--prefix", "--rev", strconv.FormatInt(first, 10), "watch/")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcdctl watch: %v", err)
	}
	out := make(chan string)
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if l := s.Text(); l != "" {
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-scanDone
		_ = cmd.Wait()
	}()

	expectLines := func(want ...string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for _, w := range want {
			select {
			case got := <-out:
				if got != w {
					t.Fatalf("etcdctl watch printed %q, want %q (expecting %q)", got, w, want)
				}
			case <-scanDone:
				t.Fatalf("etcdctl watch ended, want %q; stderr:\n%s", w, stderr.String())
			case <-deadline:
				t.Fatalf("etcdctl watch: no %q within 20s (expecting %q); stderr:\n%s", w, want, stderr.String())
			}
		}
	}
	expectLines("PUT", "watch/a", "1", "PUT", "watch/b", "2")
	c.run("put", "watch/c", "3")
	c.run("put", "unwatched", "x")
	c.run("del", "watch/a")
	expectLines("PUT", "watch/c", "3", "DELETE", "watch/a")
}

// leaseGrantedRE matches etcdctl's answer to `lease grant`.
var leaseGrantedRE = regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\((\d+)s\)$`)

func testLease(t *testing.T, c etcdctl) {
	out := strings.TrimSpace(c.run("lease", "grant", "600"))
	m := leaseGrantedRE.FindStringSubmatch(out)
	if m == nil || m[2] != "600" {
		t.Fatalf("lease grant 600 printed %q", out)
	}
	id := m[1]
	c.expect([]string{"OK"}, "put", "--lease", id, "lease/a", "1")
	c.expect([]string{"OK"}, "put", "--lease", id, "lease/b", "2")

	ttl := c.run("lease", "timetolive", "--keys", id)
	if !strings.Contains(ttl, "granted with TTL(600s)") || !strings.Contains(ttl, "attached keys([lease/a lease/b])") {
		t.Errorf("lease timetolive --keys printed %q", ttl)
	}
	c.expect([]string{fmt.Sprintf("lease %s keepalived with TTL(600)", id)}, "lease", "keep-alive", "--once", id)
	if list := c.run("lease", "list"); !strings.Contains(list, "found 1 leases") || !strings.Contains(list, id) {
		t.Errorf("lease list printed %q", list)
	}
	c.expect([]string{fmt.Sprintf("lease %s revoked", id)}, "lease", "revoke", id)
	c.expect(nil, "get", "--prefix", "lease/")
	c.expect([]string{fmt.Sprintf("lease %s already expired", id)}, "lease", "timetolive", id)
	if errOut := c.runFail("put", "--lease", id, "lease/c", "3"); !strings.Contains(errOut, "lease not found") {
		t.Errorf("put with a revoked lease: %q, want lease not found", errOut)
	}
}

func testEndpoint(t *testing.T, c etcdctl) {
	rev := c.putRev("endpoint/k", "v")

	var status []struct {
		Endpoint string `json:"Endpoint"`
		Status   struct {
			Header struct {
				Revision int64 `json:"revision"`
			} `json:"header"`
			Version string `json:"version"`
			DBSize  int64  `json:"dbSize"`
		} `json:"Status"`
	}
	out := c.run("endpoint", "status", "-w", "json")
	if err := json.Unmarshal([]byte(out), &status); err != nil || len(status) != 1 {
		t.Fatalf("endpoint status -w json: %v\n%s", err, out)
	}
	st := status[0]
	if st.Endpoint != c.endpoint || st.Status.Header.Revision < rev || st.Status.Version == "" || st.Status.DBSize <= 0 {
		t.Errorf("endpoint status = %+v, want endpoint %s, revision >= %d, a version and a size", st, c.endpoint, rev)
	}
	if table := c.run("endpoint", "status", "-w", "table"); !strings.Contains(table, c.endpoint) {
		t.Errorf("endpoint status -w table does not show %s:\n%s", c.endpoint, table)
	}
	c.run("endpoint", "health")
	// One started member, named by --name, advertising the URL it serves.
	if members := lines(c.run("member", "list")); len(members) != 1 ||
		!strings.Contains(members[0], ", started, default, ") || !strings.Contains(members[0], "http://"+c.endpoint) {
		t.Errorf("member list printed %q, want one started member named default at http://%s", members, c.endpoint)
	}

	hashKV := func() uint32 {
		t.Helper()
		var resp []struct {
			HashKV struct {
				Hash uint32 `json:"hash"`
			} `json:"HashKV"`
		}
		out := c.run("endpoint", "hashkv", "-w", "json")
		if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp) != 1 {
			t.Fatalf("endpoint hashkv -w json: %v\n%s", err, out)
		}
		return resp[0].HashKV.Hash
	}
	h1, h2 := hashKV(), hashKV()
	if h1 == 0 || h1 != h2 {
		t.Errorf("endpoint hashkv twice without writes: %d, %d; want equal and non-zero", h1, h2)
	}
	c.run("put", "endpoint/k", "changed")
	if h3 := hashKV(); h3 == h1 {
		t.Errorf("endpoint hashkv unchanged (%d) after a put", h3)
	}
}

func testCompaction(t *testing.T, c etcdctl) {
	old := c.putRev("compact/k", "old")
	cur := c.putRev("compact/k", "new")
	c.expect([]string{"compacted revision " + strconv.FormatInt(cur, 10)}, "compaction", "--physical", strconv.FormatInt(cur, 10))
	if errOut := c.runFail("get", "--rev", strconv.FormatInt(old, 10), "compact/k"); !strings.Contains(errOut, "compacted") {
		t.Errorf("get at a compacted revision: %q, want a compacted error", errOut)
	}
	c.expect([]string{"compact/k", "new"}, "get", "--rev", strconv.FormatInt(cur, 10), "compact/k")
	c.expect([]string{"compact/k", "new"}, "get", "compact/k")
	if errOut := c.runFail("compaction", strconv.FormatInt(cur, 10)); !strings.Contains(errOut, "compacted") {
		t.Errorf("compaction at the compacted revision: %q, want a compacted error", errOut)
	}
}

func testSnapshot(t *testing.T, c etcdctl) {
	path := filepath.Join(t.TempDir(), "snapshot.db")
	if out := c.run("snapshot", "save", path); !strings.Contains(out, "Snapshot saved at "+path) {
		t.Errorf("snapshot save printed %q", out)
	}
	checkSnapshot(t, path)
}

// checkSnapshot checks a saved snapshot as `etcdutl snapshot restore` would
// before using it: a bbolt database followed by its SHA-256, which must
// match and must open as a consistent bbolt database with data in it.
func checkSnapshot(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%512 != sha256.Size {
		t.Fatalf("snapshot is %d bytes; want a database in 512-byte units plus a SHA-256", len(data))
	}
	db, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(db); !bytes.Equal(got[:], sum) {
		t.Fatalf("snapshot SHA-256 %x does not match its trailer %x", got, sum)
	}
	dbPath := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(dbPath, db, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("snapshot is not a bbolt database: %v", err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		// Drain every error: Check walks the database until it is done.
		var checkErrs []error
		for err := range tx.Check() {
			checkErrs = append(checkErrs, err)
		}
		if len(checkErrs) > 0 {
			return fmt.Errorf("bbolt check: %w", errors.Join(checkErrs...))
		}
		buckets := 0
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { buckets++; return nil }); err != nil {
			return err
		}
		if buckets == 0 {
			return errors.New("no buckets")
		}
		return nil
	})
	if err != nil {
		t.Errorf("snapshot database: %v", err)
	}
}
