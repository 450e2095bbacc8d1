package agent

import (
	"context"

	"github.com/herd-project/herd/api"
)

// Server is the part of the API server the agent uses. *api.Client provides
// it through ClientServer; tests use an in-memory fake.
type Server interface {
	RegisterNode(ctx context.Context, n *api.Node) (*api.Node, error)
	Heartbeat(ctx context.Context, node string, hb api.Heartbeat) error
	ListAllocs(ctx context.Context, f api.AllocFilter) (*api.List[api.Allocation], error)
	// WatchAllocs streams changes of the allocations placed on node after
	// resourceVersion. A 410 error (api.IsGone) means the version is too old.
	WatchAllocs(ctx context.Context, node, resourceVersion string) (EventStream, error)
	ReportAllocStatus(ctx context.Context, ns, name string, r api.AllocStatusReport) (*api.Allocation, error)
}

// EventStream is an open watch. Next returns io.EOF when the server ended the
// stream and the server's *api.Error for an ERROR event.
type EventStream interface {
	Next() (api.WatchEvent, error)
	Close() error
}

// ClientServer adapts the HTTP client of the API server to Server.
func ClientServer(c *api.Client) Server { return clientServer{c} }

type clientServer struct{ *api.Client }

func (c clientServer) WatchAllocs(ctx context.Context, node, resourceVersion string) (EventStream, error) {
	w, err := c.Watch(ctx, "allocs", api.WatchOptions{Node: node, ResourceVersion: resourceVersion})
	if err != nil {
		return nil, err
	}
	return w, nil
}
