package sinks

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Upstream is where a sink ships to.
type Upstream interface {
	// Connect (re)establishes the connection and returns the highest
	// source sequence the upstream already holds from this sink's stream,
	// or -1 when it holds none or cannot tell.
	Connect(ctx context.Context) (int64, error)
	// Ship sends events in order and waits for the upstream's answers. It
	// returns how many events from the start are settled (acknowledged,
	// duplicates or rejected for good; rejects lists the last kind) and,
	// when not all are, why the rest must be retried.
	Ship(ctx context.Context, events []Event) (settled int, rejects []Reject, err error)
	// Close releases the connection.
	Close() error
}

// Reject is an event the upstream will never store (too large, refused as
// invalid): it goes to the sink's dead-letter stream.
type Reject struct {
	Index  int    // into the events passed to Ship
	Reason string // the upstream's words
}

// RetryAfterError asks the sink to wait at least After before retrying
// (an HTTP 429 or 503 with Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// FatalError marks a failure that retrying soon will not fix (credentials
// refused, a stream that does not exist and may not be created): the sink
// reports state "failing" and retries at its slowest pace.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }

func (e *FatalError) Unwrap() error { return e.Err }

func isFatal(err error) bool {
	var f *FatalError
	return errors.As(err, &f)
}
