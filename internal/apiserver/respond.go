package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// apiErr builds an error answer.
func apiErr(code int, reason, format string, args ...any) *api.Error {
	return &api.Error{Status: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *api.Error {
	return apiErr(http.StatusBadRequest, api.ReasonBadRequest, format, args...)
}

func notFound(format string, args ...any) *api.Error {
	return apiErr(http.StatusNotFound, api.ReasonNotFound, format, args...)
}

func conflict(format string, args ...any) *api.Error {
	return apiErr(http.StatusConflict, api.ReasonConflict, format, args...)
}

// invalid is the answer to an object that fails validation: err's field
// errors become the details.
func invalid(what string, err error) *api.Error {
	e := apiErr(http.StatusBadRequest, api.ReasonInvalid, "%s is invalid", what)
	var fes api.FieldErrors
	if errors.As(err, &fes) {
		e.Details = fes
	} else {
		e.Message += ": " + err.Error()
	}
	return e
}

// fieldInvalid is the answer to one bad field of a request.
func fieldInvalid(what, field, format string, args ...any) *api.Error {
	return invalid(what, api.FieldErrors{{Field: field, Message: fmt.Sprintf(format, args...)}})
}

// internalError is a failure that is no fault of the request.
type internalError struct{ msg string }

func (e *internalError) Error() string { return e.msg }

// toAPIError turns any error of a handler into the answer to send.
func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, registry.ErrAlreadyExists):
		return apiErr(http.StatusConflict, api.ReasonAlreadyExists, "%v", err)
	case errors.Is(err, registry.ErrConflict):
		return apiErr(http.StatusConflict, api.ReasonConflict, "%v", err)
	case errors.Is(err, registry.ErrNotFound):
		return apiErr(http.StatusNotFound, api.ReasonNotFound, "%v", err)
	case errors.Is(err, registry.ErrTooOld):
		return apiErr(http.StatusGone, api.ReasonGone, "%v", err)
	case storeUnavailable(err):
		return apiErr(http.StatusServiceUnavailable, api.ReasonUnavailable, "the store is unavailable: %v", err)
	}
	return apiErr(http.StatusInternalServerError, api.ReasonInternal, "internal error: %v", err)
}

// storeUnavailable reports whether err says the store could not be reached
// or did not answer in time, rather than refusing the request.
func storeUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, registry.ErrClosed) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
	}
	return false
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	if e.Status >= 500 && r.Context().Err() == nil {
		s.log.Error("apiserver: request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
	}
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(apiErr(code, api.ReasonInternal, "encoding the answer: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// errEmptyBody is decodeBody's answer to a request without a body.
var errEmptyBody = badRequest("request body is empty; want a JSON object")

// decodeBody reads a request's JSON body into v, rejecting unknown fields
// (a misspelt field is an error, not silently ignored), trailing data and
// bodies over MaxBodyBytes.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return apiErr(http.StatusRequestEntityTooLarge, api.ReasonBadRequest, "request body is larger than %d bytes", MaxBodyBytes)
		case errors.Is(err, io.EOF):
			return errEmptyBody
		}
		return badRequest("request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("request body: unexpected data after the JSON object")
	}
	return nil
}

// storeCtx bounds a request's store work.
func (s *Server) storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.timeout)
}

func formatRev(rev int64) string { return strconv.FormatInt(rev, 10) }

// parseVersion parses a resource version given by a client; field names it
// in the error.
func parseVersion(what, field, rv string) (int64, error) {
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n <= 0 {
		return 0, fieldInvalid(what, field, "must be a resource version (a positive integer), not %q", rv)
	}
	return n, nil
}
