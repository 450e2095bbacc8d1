package cli

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/internal/store/etcdserver"
)

// noStart fails the test if a command tries to start a store server.
func noStart(t *testing.T) startFunc {
	return func(etcdserver.Config) (storeServer, error) {
		t.Error("store server started")
		return nil, errors.New("not started")
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{args: nil, wantCode: ExitOK, wantStdout: "herd store"},
		{args: []string{"--help"}, wantCode: ExitOK, wantStdout: "Available Commands"},
		{args: []string{"help", "store"}, wantCode: ExitOK, wantStdout: "--listen-client-urls"},
		{args: []string{"store", "--help"}, wantCode: ExitOK, wantStdout: "--data-dir"},
		{args: []string{"version"}, wantCode: ExitOK, wantStdout: "herd version: "},
		{args: []string{"--version"}, wantCode: ExitOK, wantStdout: "herd "},
		{args: []string{"nope"}, wantCode: ExitUsage, wantStderr: `unknown command "nope"`},
		{args: []string{"--nope"}, wantCode: ExitUsage, wantStderr: "--nope"},
		{args: []string{"version", "extra"}, wantCode: ExitUsage, wantStderr: "Run 'herd version --help' for usage."},
		{args: []string{"store", "extra"}, wantCode: ExitUsage, wantStderr: `unknown command "extra"`},
		{args: []string{"store", "--max-txn-ops", "many"}, wantCode: ExitUsage, wantStderr: "--max-txn-ops"},
		{args: []string{"store", "--log-format", "xml"}, wantCode: ExitUsage, wantStderr: "Run 'herd store --help' for usage."},
		{args: []string{"store", "--listen-client-urls", "https://127.0.0.1:2379"}, wantCode: ExitUsage, wantStderr: "TLS"},
		{args: []string{"bench", "kv", "range", "--consistency", "x"}, wantCode: ExitUsage, wantStderr: "--consistency"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := execute(context.Background(), newRootCommand(noStart(t)), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.wantStdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr.String())
			}
		})
	}
}

func TestVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"

	var stdout, stderr bytes.Buffer
	if code := execute(context.Background(), newRootCommand(noStart(t)), []string{"version"}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit code = %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"herd version: v1.2.3\n", "Go version: " + runtime.Version(), "etcd API version: 3."} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output does not contain %q:\n%s", want, stdout.String())
		}
	}
}

func TestClassifyErrors(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		run      func(cmd *cobra.Command) error
		wantCode int
	}{
		{"success", func(*cobra.Command) error { return nil }, ExitOK},
		{"explicit usage error", func(*cobra.Command) error { return usageErrorf("--x: bad") }, ExitUsage},
		{"explicit runtime error", func(*cobra.Command) error { return runtimeError(errBoom) }, ExitError},
		{"error before the input is checked", func(*cobra.Command) error { return errBoom }, ExitUsage},
		{"error after the input is checked", func(cmd *cobra.Command) error {
			cmd.SilenceUsage = true
			return errBoom
		}, ExitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := &cobra.Command{Use: "herd", SilenceErrors: true, SilenceUsage: true}
			root.AddCommand(&cobra.Command{
				Use:  "sub",
				RunE: func(cmd *cobra.Command, _ []string) error { return tt.run(cmd) },
			})
			classifyErrors(root)
			var stdout, stderr bytes.Buffer
			if code := execute(context.Background(), root, []string{"sub"}, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
		})
	}
}
