package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Copy writes the log of stream in dir to w, as Open with opt would read it.
// When w is an http.Flusher every chunk is flushed at once, so an HTTP
// client following a log sees lines as they come. A follow ends without
// error when ctx ends.
func Copy(ctx context.Context, w io.Writer, dir, stream string, opt ReadOptions) error {
	r, err := Open(ctx, dir, stream, opt)
	if err != nil {
		return err
	}
	defer r.Close()
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("logstore: copy %s log: %w", stream, werr)
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
