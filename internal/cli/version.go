package cli

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
	etcdversion "go.etcd.io/etcd/api/v3/version"
)

// Version is herd's version. Release builds set it with
//
//	go build -ldflags "-X github.com/herd-project/herd/internal/cli.Version=v1.2.3" ./cmd/herd
var Version = "dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print herd's version, its Go version and the etcd API version it serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeVersion(cmd.OutOrStdout())
		},
	}
}

func writeVersion(w io.Writer) error {
	_, err := fmt.Fprintf(w, "herd version: %s\nGo version: %s %s/%s\netcd API version: %s\n",
		Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, etcdversion.APIVersion)
	if err != nil {
		return runtimeError(fmt.Errorf("write version: %w", err))
	}
	return nil
}
