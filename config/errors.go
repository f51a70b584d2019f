package config

import (
	"errors"
	"strconv"
	"strings"
)

// ErrUsage marks command-line errors (unknown flag, bad flag value,
// unexpected argument). Test with errors.Is(err, ErrUsage); the caller
// should print the usage and exit with status 2.
var ErrUsage = errors.New("usage error")

// Error is one configuration problem. Load returns one *Error, or several
// joined with errors.Join, so that every problem is reported at once.
//
// Exactly one of the location groups is set: File (+Line) for the TOML file,
// Env for a BADBATCH_* variable, Flag for a command-line flag.
type Error struct {
	File string // TOML file, when the problem is in the file (or the file as a whole)
	Line int    // 1-based line in File; 0 when unknown
	Key  string // dotted key, e.g. "ring.buffer_size"; empty for syntax or read errors without one
	Flag string // command-line flag, e.g. "--buffer-size"
	Env  string // environment variable, e.g. "BADBATCH_SERVER_PORT"
	Msg  string // what is wrong and what to write instead
	Err  error  // underlying cause, if any

	usage bool // a command-line error without a specific flag
}

// Error formats the problem as "file:line: key: msg", "flag --x: msg" or
// "env BADBATCH_X: msg".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Flag != "":
		b.WriteString("flag ")
		b.WriteString(e.Flag)
		if e.Key != "" {
			b.WriteString(" (" + e.Key + ")")
		}
	case e.Env != "":
		b.WriteString("environment ")
		b.WriteString(e.Env)
		if e.Key != "" {
			b.WriteString(" (" + e.Key + ")")
		}
	case e.File != "":
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		if e.Key != "" {
			b.WriteString(": " + e.Key)
		}
	case e.usage:
		b.WriteString("command line")
	default:
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether e is a command-line error, for errors.Is(err, ErrUsage).
func (e *Error) Is(target error) bool {
	return target == ErrUsage && (e.Flag != "" || e.usage)
}

// Errors flattens err (an *Error, or errors.Join of them, possibly wrapped
// with %w) into its *Error parts, in order. Other errors are skipped.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *Error:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}
