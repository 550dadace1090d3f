package config

import (
	"fmt"
	"strings"
)

// maxErrors bounds how many problems Parse reports, so a binary file or a
// wrong path does not produce thousands of lines.
const maxErrors = 20

// Error is one problem in a configuration file.
type Error struct {
	File      string
	Line      int
	Directive string // directive name, or "<kind>" for a block tag; may be empty
	Msg       string
}

func (e *Error) Error() string {
	if e.Directive == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Directive, e.Msg)
}

// ErrorList is every problem Parse found, in line order, one per line of
// its Error text. Parse returns it as the error when it is not empty.
type ErrorList []*Error

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors for errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}
