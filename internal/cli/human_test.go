package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{5*time.Second + 900*time.Millisecond, "5s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m"},
		{3*time.Minute + 59*time.Second, "3m"},
		{time.Hour, "1h"},
		{47 * time.Hour, "47h"},
		{48 * time.Hour, "2d"},
		{100 * 24 * time.Hour, "100d"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := formatAge(fixedNow, time.Time{}); got != "-" {
		t.Errorf("age of the zero time = %q, want -", got)
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		bytes int64
		want  string
	}{
		{0, "0"},
		{900, "900"},
		{1024, "1Ki"},
		{1536, "1.5Ki"},
		{32 << 20, "32Mi"},
		{512 << 20, "512Mi"},
		{1536 << 20, "1.5Gi"},
		{2 << 30, "2Gi"},
		{(2 << 30) + 1, "2.0Gi"},
		{15<<30 + 200<<20, "15Gi"},
		{3 << 40, "3Ti"},
		{-(64 << 20), "-64Mi"},
	}
	for _, tt := range tests {
		if got := formatMemory(tt.bytes); got != tt.want {
			t.Errorf("formatMemory(%d) = %q, want %q", tt.bytes, got, tt.want)
		}
	}
}

func TestFormatCPU(t *testing.T) {
	tests := []struct {
		millicores int64
		want       string
	}{
		{0, "0"},
		{100, "100m"},
		{1000, "1"},
		{1500, "1500m"},
		{16000, "16"},
	}
	for _, tt := range tests {
		if got := formatCPU(tt.millicores); got != tt.want {
			t.Errorf("formatCPU(%d) = %q, want %q", tt.millicores, got, tt.want)
		}
	}
}

func TestFormatCommand(t *testing.T) {
	tests := []struct {
		cmd  string
		args []string
		want string
	}{
		{"/bin/true", nil, "/bin/true"},
		{"/bin/sh", []string{"-c", "echo hi; sleep 1"}, `/bin/sh -c 'echo hi; sleep 1'`},
		{"echo", []string{"it's", ""}, `echo 'it'\''s' ''`},
	}
	for _, tt := range tests {
		if got := formatCommand(tt.cmd, tt.args); got != tt.want {
			t.Errorf("formatCommand(%q, %q) = %s, want %s", tt.cmd, tt.args, got, tt.want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1s"},
		{30 * time.Minute, "30m"},
		{24 * time.Hour, "24h"},
		{90 * time.Minute, "1h30m"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		if got := shortDuration(api.Duration(tt.d)); got != tt.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestKindAndName(t *testing.T) {
	all := []resourceKind{kindJobs, kindAllocs, kindNodes, kindEvents}
	tests := []struct {
		args     []string
		required bool
		wantKind resourceKind
		wantName string
		wantErr  string
	}{
		{args: []string{"jobs"}, wantKind: kindJobs},
		{args: []string{"job", "web"}, wantKind: kindJobs, wantName: "web"},
		{args: []string{"job/web"}, wantKind: kindJobs, wantName: "web"},
		{args: []string{"Allocations", "web.web[0]"}, wantKind: kindAllocs, wantName: "web.web[0]"},
		{args: []string{"alloc/web.web[0]"}, wantKind: kindAllocs, wantName: "web.web[0]"},
		{args: []string{"node"}, required: true, wantErr: "name the node"},
		{args: []string{"job/"}, wantErr: "names no object"},
		{args: []string{"job/web", "db"}, wantErr: "not both"},
		{args: []string{"pod", "x"}, wantErr: `unknown resource type "pod"`},
		{args: nil, wantErr: "name a resource type"},
	}
	for _, tt := range tests {
		kind, name, err := kindAndName(tt.args, tt.required, all...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != ExitUsage {
				t.Errorf("kindAndName(%q) error = %v, want a usage error with %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || kind != tt.wantKind || name != tt.wantName {
			t.Errorf("kindAndName(%q) = %q, %q, %v; want %q, %q", tt.args, kind, name, err, tt.wantKind, tt.wantName)
		}
	}
}
