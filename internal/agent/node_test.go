package agent

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

func TestParseMemTotal(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"MemTotal:       16314824 kB\nMemFree: 1 kB\n", 16314824 * 1024, ""},
		{"MemFree: 1 kB\nMemTotal: 2048\n", 2048, ""},
		{"MemTotal: 3 MB\n", 3 << 20, ""},
		{"MemFree: 1 kB\n", 0, "no MemTotal"},
		{"MemTotal: lots kB\n", 0, "bad MemTotal"},
		{"MemTotal: 1 parsecs\n", 0, "unknown MemTotal unit"},
	} {
		got, err := parseMemTotal([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseMemTotal(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseMemTotal(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestAllocatable(t *testing.T) {
	got := allocatable(api.Resources{CPU: 4000, Memory: 1000}, api.Resources{CPU: 500, Memory: 2000})
	if got.CPU != 3500 || got.Memory != 0 {
		t.Errorf("allocatable = %+v", got)
	}
}

func TestAdvertiseAddress(t *testing.T) {
	if got := advertiseAddress(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7081}); got != "127.0.0.1:7081" {
		t.Errorf("specific host: %q", got)
	}
	got := advertiseAddress(&net.TCPAddr{IP: net.IPv6unspecified, Port: 7081})
	host, port, err := net.SplitHostPort(got)
	if err != nil || port != "7081" || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
		t.Errorf("unspecified host became %q", got)
	}
}

func TestProbeMachine(t *testing.T) {
	healthy := newFakeDriver("exec", nil)
	healthy.fp = driver.Fingerprint{Healthy: true, Message: "cgroups unavailable: limits not enforced"}
	broken := newFakeDriver("docker", nil)
	broken.fp = driver.Fingerprint{Healthy: false, Message: "no daemon"}
	m := probeMachine(context.Background(), "n1", []driver.Driver{healthy, broken})
	if m.capacity.CPU <= 0 || m.attributes[api.AttrOS] == "" || m.attributes[api.AttrArch] == "" || m.attributes[api.AttrName] != "n1" {
		t.Errorf("capacity %+v, attributes %v", m.capacity, m.attributes)
	}
	if names := m.driverNames(); len(names) != 1 || names[0] != "exec" {
		t.Errorf("drivers %v", names)
	}
	if m.message != "exec: cgroups unavailable: limits not enforced; docker: unhealthy: no daemon" {
		t.Errorf("message %q", m.message)
	}
}
