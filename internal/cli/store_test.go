package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/herd-project/herd/internal/store/etcdserver"
)

// parseStoreFlags parses args the way `herd store` does.
func parseStoreFlags(t *testing.T, args []string) (storeSettings, error) {
	t.Helper()
	var f storeFlags
	fs := pflag.NewFlagSet("store", pflag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return storeSettings{}, err
	}
	return f.settings(fs)
}

func TestStoreFlagsDefaults(t *testing.T) {
	s, err := parseStoreFlags(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := etcdserver.Config{
		Name:                        "default",
		DataDir:                     "default.herd",
		ListenClientURLs:            []string{"http://127.0.0.1:2379"},
		MaxRequestBytes:             1572864,
		MaxTxnOps:                   128,
		WatchProgressNotifyInterval: 10 * time.Minute,
	}
	if !reflect.DeepEqual(s.server, want) {
		t.Errorf("config = %+v, want %+v", s.server, want)
	}
	if s.logLevel != slog.LevelInfo || s.logFormat != "text" {
		t.Errorf("log = %v %q, want INFO text", s.logLevel, s.logFormat)
	}
}

func TestStoreFlagsValid(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, s storeSettings)
	}{
		{"data dir follows name", []string{"--name", "n1"}, func(t *testing.T, s storeSettings) {
			if s.server.DataDir != "n1.herd" {
				t.Errorf("DataDir = %q, want n1.herd", s.server.DataDir)
			}
		}},
		{"explicit data dir", []string{"--name", "n1", "--data-dir", "/var/lib/herd"}, func(t *testing.T, s storeSettings) {
			if s.server.DataDir != "/var/lib/herd" {
				t.Errorf("DataDir = %q", s.server.DataDir)
			}
		}},
		{"several listen URLs", []string{"--listen-client-urls", "http://127.0.0.1:2379, http://[::1]:0,http://:2380/"}, func(t *testing.T, s storeSettings) {
			want := []string{"http://127.0.0.1:2379", "http://[::1]:0", "http://:2380"}
			if !reflect.DeepEqual(s.server.ListenClientURLs, want) {
				t.Errorf("ListenClientURLs = %q, want %q", s.server.ListenClientURLs, want)
			}
			if s.server.AdvertiseClientURLs != nil {
				t.Errorf("AdvertiseClientURLs = %q, want unset (the server uses the listen URLs)", s.server.AdvertiseClientURLs)
			}
		}},
		{"advertise URLs", []string{"--advertise-client-urls", "http://node1.example:2379"}, func(t *testing.T, s storeSettings) {
			if want := []string{"http://node1.example:2379"}; !reflect.DeepEqual(s.server.AdvertiseClientURLs, want) {
				t.Errorf("AdvertiseClientURLs = %q, want %q", s.server.AdvertiseClientURLs, want)
			}
		}},
		{"limits", []string{"--max-request-bytes", "10485760", "--max-txn-ops", "1024"}, func(t *testing.T, s storeSettings) {
			if s.server.MaxRequestBytes != 10<<20 || s.server.MaxTxnOps != 1024 {
				t.Errorf("limits = %d, %d", s.server.MaxRequestBytes, s.server.MaxTxnOps)
			}
		}},
		{"progress notify", []string{"--watch-progress-notify-interval", "5s"}, func(t *testing.T, s storeSettings) {
			if s.server.WatchProgressNotifyInterval != 5*time.Second {
				t.Errorf("interval = %v", s.server.WatchProgressNotifyInterval)
			}
		}},
		{"progress notify, experimental name", []string{"--experimental-watch-progress-notify-interval", "1m"}, func(t *testing.T, s storeSettings) {
			if s.server.WatchProgressNotifyInterval != time.Minute {
				t.Errorf("interval = %v", s.server.WatchProgressNotifyInterval)
			}
		}},
		{"no fsync", []string{"--unsafe-no-fsync"}, func(t *testing.T, s storeSettings) {
			if !s.server.UnsafeNoFsync {
				t.Error("UnsafeNoFsync = false")
			}
		}},
		{"log flags", []string{"--log-level", "DEBUG", "--log-format", "json"}, func(t *testing.T, s storeSettings) {
			if s.logLevel != slog.LevelDebug || s.logFormat != "json" {
				t.Errorf("log = %v %q", s.logLevel, s.logFormat)
			}
		}},
		{"log level warn", []string{"--log-level", "warn"}, func(t *testing.T, s storeSettings) {
			if s.logLevel != slog.LevelWarn {
				t.Errorf("level = %v", s.logLevel)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseStoreFlags(t, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestStoreFlagsInvalid(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // the error must name the flag
	}{
		{[]string{"--name", ""}, "--name"},
		{[]string{"--data-dir", ""}, "--data-dir"},
		{[]string{"--listen-client-urls", ""}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", " , "}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "127.0.0.1:2379"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "https://127.0.0.1:2379"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "unix://herd.sock"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "http://127.0.0.1"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "http://127.0.0.1:70000"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "http://127.0.0.1:2379/v3"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "http://u:p@127.0.0.1:2379"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls", "http://127.0.0.1:2379,http//x:1"}, "--listen-client-urls"},
		{[]string{"--advertise-client-urls", ""}, "--advertise-client-urls"},
		{[]string{"--advertise-client-urls", "http://127.0.0.1:0"}, "--advertise-client-urls"},
		{[]string{"--advertise-client-urls", "http://:2379"}, "--advertise-client-urls"},
		{[]string{"--max-request-bytes", "0"}, "--max-request-bytes"},
		{[]string{"--max-request-bytes", "4294967296"}, "--max-request-bytes"},
		{[]string{"--max-request-bytes", "-1"}, "--max-request-bytes"},
		{[]string{"--max-request-bytes", "1.5MiB"}, "--max-request-bytes"},
		{[]string{"--max-txn-ops", "0"}, "--max-txn-ops"},
		{[]string{"--watch-progress-notify-interval", "0s"}, "--watch-progress-notify-interval"},
		{[]string{"--experimental-watch-progress-notify-interval", "-1m"}, "--experimental-watch-progress-notify-interval"},
		{[]string{"--experimental-watch-progress-notify-interval", "ten"}, "--experimental-watch-progress-notify-interval"},
		{[]string{"--log-level", "trace"}, "--log-level"},
		{[]string{"--log-level", "info+2"}, "--log-level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--no-such-flag"}, "--no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseStoreFlags(t, tt.args)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not name %s", err, tt.wantErr)
			}
		})
	}
}

// fakeServer records how the command drives a store server.
type fakeServer struct {
	mu       sync.Mutex
	cfg      etcdserver.Config
	closed   bool
	closeErr error
}

func (f *fakeServer) ClientURLs() []string { return []string{"http://127.0.0.1:12379"} }

func (f *fakeServer) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return f.closeErr
}

func (f *fakeServer) start(startErr error) startFunc {
	return func(cfg etcdserver.Config) (storeServer, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.cfg = cfg
		if startErr != nil {
			return nil, startErr
		}
		return f, nil
	}
}

func TestStoreCommandLifecycle(t *testing.T) {
	tests := []struct {
		name       string
		startErr   error
		closeErr   error
		wantCode   int
		wantClosed bool
		wantStderr string
	}{
		{name: "clean shutdown", wantCode: ExitOK, wantClosed: true, wantStderr: "herd store stopped"},
		{name: "start fails", startErr: errors.New("data dir locked"), wantCode: ExitError, wantStderr: "start store: data dir locked"},
		{name: "close fails", closeErr: errors.New("disk gone"), wantCode: ExitError, wantClosed: true, wantStderr: "close store: disk gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &fakeServer{closeErr: tt.closeErr}
			// A cancelled context stands in for SIGTERM: the command
			// shuts down as soon as it has started.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr bytes.Buffer
			args := []string{"store", "--name", "n1", "--log-format", "json", "--max-txn-ops", "64"}
			code := execute(ctx, newRootCommand(srv.start(tt.startErr)), args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			if srv.closed != tt.wantClosed {
				t.Errorf("closed = %v, want %v", srv.closed, tt.wantClosed)
			}
			if srv.cfg.Name != "n1" || srv.cfg.DataDir != "n1.herd" || srv.cfg.MaxTxnOps != 64 || srv.cfg.Logger == nil {
				t.Errorf("server config = %+v", srv.cfg)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr.String())
			}
		})
	}
}

func TestStoreLogsListeningURLs(t *testing.T) {
	srv := &fakeServer{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := execute(ctx, newRootCommand(srv.start(nil)), []string{"store", "--log-format", "json"}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit code = %d; stderr:\n%s", code, stderr.String())
	}
	var ready struct {
		Msg        string   `json:"msg"`
		ClientURLs []string `json:"client_urls"`
	}
	for line := range strings.Lines(stderr.String()) {
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if ready.Msg == "herd store ready" {
			break
		}
	}
	if want := srv.ClientURLs(); !reflect.DeepEqual(ready.ClientURLs, want) {
		t.Errorf("ready log client_urls = %q, want %q; stderr:\n%s", ready.ClientURLs, want, stderr.String())
	}
}
