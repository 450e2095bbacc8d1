package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is the body of every non-2xx answer of the API server.
type Error struct {
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Reason is a machine-readable word: BadRequest, Invalid, NotFound,
	// AlreadyExists, Conflict, Gone, Unavailable, Internal.
	Reason  string      `json:"reason"`
	Message string      `json:"message"`
	Details FieldErrors `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if len(e.Details) > 0 {
		return e.Message + ": " + e.Details.Error()
	}
	return e.Message
}

// Reasons used in Error.
const (
	ReasonBadRequest    = "BadRequest"
	ReasonInvalid       = "Invalid"
	ReasonNotFound      = "NotFound"
	ReasonAlreadyExists = "AlreadyExists"
	ReasonConflict      = "Conflict"
	ReasonGone          = "Gone"
	ReasonUnavailable   = "Unavailable"
	ReasonInternal      = "Internal"
)

// HasStatus reports whether err is an API error with the given HTTP status.
func HasStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool { return HasStatus(err, http.StatusNotFound) }

// IsConflict reports whether err says the object changed since it was read
// (or already exists).
func IsConflict(err error) bool { return HasStatus(err, http.StatusConflict) }

// IsGone reports whether err says a watch's resource version is too old.
func IsGone(err error) bool { return HasStatus(err, http.StatusGone) }

// List is the answer to a list request. ResourceVersion is the store
// revision the list was read at: a watch from it misses nothing.
type List[T any] struct {
	Items           []T    `json:"items"`
	ResourceVersion string `json:"resourceVersion"`
}

// Watch event types.
const (
	Added    = "ADDED"
	Modified = "MODIFIED"
	Deleted  = "DELETED"
	// Bookmark carries only a resource version: the watcher has seen
	// everything up to it. Sent periodically so that a resumed watch starts
	// close to where it left off.
	Bookmark = "BOOKMARK"
	// WatchError carries an Error in Object; the stream ends after it.
	WatchError = "ERROR"
)

// WatchEvent is one line of a watch stream (newline-delimited JSON).
type WatchEvent struct {
	Type            string          `json:"type"`
	ResourceVersion string          `json:"resourceVersion"`
	Object          json.RawMessage `json:"object,omitempty"`
}

// Decode unmarshals the event's object into v.
func (e *WatchEvent) Decode(v any) error {
	if len(e.Object) == 0 {
		return fmt.Errorf("watch event %s has no object", e.Type)
	}
	return json.Unmarshal(e.Object, v)
}

// ScaleRequest sets the count of one group (or of the only group).
type ScaleRequest struct {
	Group string `json:"group,omitempty"`
	Count int    `json:"count"`
	// ResourceVersion, if set, makes the scale conditional on the job's version.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// AllocStatusReport is what an agent sends about one allocation. UID names
// the incarnation the agent runs: a report for a replaced incarnation is
// rejected with 409 so that it cannot overwrite its replacement's status.
type AllocStatusReport struct {
	UID    string      `json:"uid"`
	Node   string      `json:"node"`
	Status AllocStatus `json:"status"`
}

// Heartbeat is what an agent sends periodically.
type Heartbeat struct {
	AgentID string `json:"agentID"`
}

// AvailabilityRequest sets a node's availability (herd drain).
type AvailabilityRequest struct {
	Availability Availability `json:"availability"`
}
