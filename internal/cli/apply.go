package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/herd-project/herd/api"
)

// maxJobFileBytes bounds a job file; real ones are a few kilobytes.
const maxJobFileBytes = 4 << 20

// maxApplyAttempts bounds how often apply re-reads a job that changed
// between its read and its write (the controllers write job status often).
const maxApplyAttempts = 5

// What apply did to a job.
const (
	applyCreated    = "created"
	applyConfigured = "configured"
	applyUnchanged  = "unchanged"
)

// newApplyCommand builds herd apply.
func newApplyCommand() *cobra.Command {
	var file string
	var conn *serverFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update a job from a job file",
		Long: `Create a job from a job file (YAML or JSON), or update the job of that
name so that it matches the file.

The file is checked before it is sent: every problem is listed with the
path of its field. apply prints whether the job was created, configured
(its spec changed) or unchanged. The namespace is the file's
metadata.namespace, else -n, else "default".`,
		Example: `  # Run the example web service
  herd apply -f examples/web.yaml

  # Read the job from standard input
  cat job.yaml | herd apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf("-f is required: name a job file, or - for standard input")
			}
			if err := conn.checkNamespace(); err != nil {
				return err
			}
			c, err := conn.client()
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			data, err := readJobFile(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			nsFlag := ""
			if cmd.Flags().Changed(flagNamespace) {
				nsFlag = conn.namespace
			}
			job, err := loadJob(data, file, nsFlag)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			result, err := applyJob(ctx, c, job)
			if err != nil {
				return serverError(c, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "job/%s %s\n", job.Name, result)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "job file (YAML or JSON); - reads standard input")
	conn = addServerFlags(cmd)
	conn.addNamespaceFlag(cmd, "namespace of the job, when the file names none")
	return cmd
}

// readJobFile reads the named file, or stdin for "-".
func readJobFile(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read job file: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxJobFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read job file %s: %w", displayName(name), err)
	}
	if len(data) > maxJobFileBytes {
		return nil, fmt.Errorf("job file %s is larger than %s", displayName(name), formatMemory(maxJobFileBytes))
	}
	return data, nil
}

func displayName(file string) string {
	if file == "-" {
		return "<stdin>"
	}
	return file
}

// loadJob decodes, defaults and validates a job file. nsFlag is the
// namespace given with -n, or "": it fills in a file that names none and
// must agree with one that does.
func loadJob(data []byte, file, nsFlag string) (*api.Job, error) {
	fileNS := fileNamespace(data)
	job, err := api.DecodeJob(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayName(file), err)
	}
	switch {
	case nsFlag != "" && fileNS != "" && nsFlag != fileNS:
		return nil, fmt.Errorf("%s: the file's namespace %q does not match --%s %q", displayName(file), fileNS, flagNamespace, nsFlag)
	case nsFlag != "" && fileNS == "":
		job.Namespace = nsFlag
	}
	if err := job.Validate(); err != nil {
		var fes api.FieldErrors
		if errors.As(err, &fes) {
			return nil, fmt.Errorf("job file %s is invalid:%s", displayName(file), fieldErrorLines(fes))
		}
		return nil, fmt.Errorf("job file %s is invalid: %w", displayName(file), err)
	}
	return job, nil
}

// fileNamespace is the namespace a job file names itself, before defaults
// fill one in. A file that does not decode names none; DecodeJob reports
// why.
func fileNamespace(data []byte) string {
	var head struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	_ = yaml.Unmarshal(data, &head)
	return head.Metadata.Namespace
}

// jobClient is the part of the API client apply uses.
type jobClient interface {
	GetJob(ctx context.Context, ns, name string) (*api.Job, error)
	CreateJob(ctx context.Context, j *api.Job) (*api.Job, error)
	PutJob(ctx context.Context, j *api.Job) (*api.Job, error)
}

// applyJob creates job, or updates the existing job if its spec or labels
// differ. The update is conditional on the version read, so that it never
// overwrites a change made in between; such a change makes it try again.
func applyJob(ctx context.Context, c jobClient, job *api.Job) (string, error) {
	for attempt := 1; ; attempt++ {
		existing, err := c.GetJob(ctx, job.Namespace, job.Name)
		if api.IsNotFound(err) {
			_, err = c.CreateJob(ctx, job)
			if api.IsConflict(err) && attempt < maxApplyAttempts {
				continue // created in between: compare with it
			}
			if err != nil {
				return "", err
			}
			return applyCreated, nil
		}
		if err != nil {
			return "", err
		}
		same, err := sameDesiredState(existing, job)
		if err != nil {
			return "", err
		}
		if same {
			return applyUnchanged, nil
		}
		update := *job
		update.ResourceVersion = existing.ResourceVersion
		_, err = c.PutJob(ctx, &update)
		if api.IsConflict(err) && attempt < maxApplyAttempts {
			continue
		}
		if err != nil {
			return "", err
		}
		return applyConfigured, nil
	}
}

// sameDesiredState compares what a job file sets: spec and labels. It
// compares JSON so that an empty list and an absent one count as equal.
func sameDesiredState(a, b *api.Job) (bool, error) {
	type desired struct {
		Labels map[string]string `json:"labels,omitempty"`
		Spec   api.JobSpec       `json:"spec"`
	}
	ja, err := json.Marshal(desired{a.Labels, a.Spec})
	if err != nil {
		return false, fmt.Errorf("compare jobs: %w", err)
	}
	jb, err := json.Marshal(desired{b.Labels, b.Spec})
	if err != nil {
		return false, fmt.Errorf("compare jobs: %w", err)
	}
	return bytes.Equal(ja, jb), nil
}
