package httperr

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/baicommit/baicommit/api"
)

// FromStatus is the error another baicommit server answered with: relayed
// with the same status and message.
func FromStatus(status int, msg string) *Error {
	for k, s := range statuses {
		if s == status {
			return &Error{Kind: k, Msg: msg}
		}
	}
	return &Error{Kind: Internal, Msg: msg}
}

// DecodeJSON decodes a request body of at most max bytes into v. Unknown
// fields are errors: a misspelt field must not be silently ignored.
func DecodeJSON(body io.Reader, max int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return New(Invalid, "bad request body: %v", err)
	}
	return nil
}

// WriteJSON writes v as the JSON answer with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Write answers with err as an api.Error and its Status. An error that is
// not an *Error was not written for users and says it is internal.
func Write(w http.ResponseWriter, err error) {
	body := api.Error{Message: err.Error()}
	var e *Error
	if errors.As(err, &e) {
		body.Task = e.Task
	} else {
		body.Message = "internal error: " + err.Error()
	}
	WriteJSON(w, Status(err), body)
}
