package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
)

// envServer names the environment variable that sets the default of
// --server.
const envServer = "HERD_ADDR"

// Names of the connection flags.
const (
	flagServer        = "server"
	flagNamespace     = "namespace"
	flagAllNamespaces = "all-namespaces"
)

// serverFlags holds the connection flags of the commands that talk to the
// API server.
type serverFlags struct {
	server    string
	namespace string
}

// addServerFlags defines --server on cmd and returns where its value lands.
// Commands about namespaced objects add -n/--namespace with addNamespaceFlag.
func addServerFlags(cmd *cobra.Command) *serverFlags {
	f := &serverFlags{}
	cmd.Flags().StringVar(&f.server, flagServer, defaultServer(),
		"address of the herd API server; $"+envServer+" sets the default")
	return f
}

// defaultServer is $HERD_ADDR or the API's default address.
func defaultServer() string {
	if addr := strings.TrimSpace(os.Getenv(envServer)); addr != "" {
		return addr
	}
	return api.DefaultAddress
}

// addNamespaceFlag defines -n/--namespace on cmd.
func (f *serverFlags) addNamespaceFlag(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVarP(&f.namespace, flagNamespace, "n", api.DefaultNamespace, usage)
}

// client returns a client of the API server named by --server. A bad
// address is a usage error.
func (f *serverFlags) client() (*api.Client, error) {
	c, err := api.NewClient(f.server)
	if err != nil {
		return nil, usageErrorf("--%s: %w", flagServer, err)
	}
	return c, nil
}

// checkNamespace returns a usage error when --namespace is not a valid name.
func (f *serverFlags) checkNamespace() error {
	if p := api.CheckName(f.namespace); p != "" {
		return usageErrorf("--%s %q: %s", flagNamespace, f.namespace, p)
	}
	return nil
}

// serverError turns an error of the API client into the error a person
// should read: one clear line when the server cannot be reached, and every
// field problem on its own line when the server rejected an object.
func serverError(c *api.Client, err error) error {
	if errors.Is(err, api.ErrUnreachable) {
		return runtimeError(fmt.Errorf(
			"cannot reach the herd API server at %s: %s (start one with 'herd up', or set --%s / %s)",
			c.Address(), unreachableCause(err), flagServer, envServer))
	}
	var apiErr *api.Error
	if errors.As(err, &apiErr) && len(apiErr.Details) > 0 {
		return runtimeError(fmt.Errorf("%s:%s", apiErr.Message, fieldErrorLines(apiErr.Details)))
	}
	return runtimeError(err)
}

// unreachableCause digs the network error out of the client's wrapping:
// "dial tcp 127.0.0.1:7080: connect: connection refused".
func unreachableCause(err error) error {
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) {
		return err
	}
	for _, inner := range multi.Unwrap() {
		if !errors.Is(inner, api.ErrUnreachable) {
			return innermostURLError(inner)
		}
	}
	return err
}

// innermostURLError drops the "Get \"http://...\":" prefix that repeats the
// address the message already names.
func innermostURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// fieldErrorLines renders field problems one per line, indented.
func fieldErrorLines(errs api.FieldErrors) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.String())
	}
	return b.String()
}

// requestTimeout bounds the commands that make a few requests and print.
const requestTimeout = 30 * time.Second

// notFound words a 404 in the CLI's terms: job "web" not found in namespace
// default. Other errors pass through.
func notFound(err error, kind resourceKind, ns, name string) error {
	if !api.IsNotFound(err) {
		return err
	}
	if ns == "" {
		return fmt.Errorf("%s %q not found", kind.singular(), name)
	}
	return fmt.Errorf("%s %q not found in namespace %s", kind.singular(), name, ns)
}
