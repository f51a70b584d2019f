package disruptor

import (
	"errors"
	"fmt"
)

var (
	// ErrInsufficientCapacity is returned by the Try* claims when the ring
	// has not enough free slots.
	ErrInsufficientCapacity = errors.New("disruptor: insufficient capacity")
	// ErrHalted is returned by claims and waits after the ring or the
	// disruptor was halted or shut down.
	ErrHalted = errors.New("disruptor: halted")
	// ErrAlerted is returned by a barrier wait that was interrupted by Alert.
	ErrAlerted = errors.New("disruptor: barrier alerted")
	// ErrTimeout is returned by a barrier wait that timed out (timeout
	// wait strategies only).
	ErrTimeout = errors.New("disruptor: wait timed out")
	// ErrAlreadyStarted is returned when a started disruptor is configured
	// or started again.
	ErrAlreadyStarted = errors.New("disruptor: already started")
)

// PanicError wraps a value recovered from a panicking handler.
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the goroutine stack at the panic.
	Stack []byte
}

// Error implements error.
func (p *PanicError) Error() string { return fmt.Sprintf("disruptor: handler panicked: %v", p.Value) }

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}
