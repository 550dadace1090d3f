package config

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// node is one line of the file after the first pass: a directive, or a
// block with the nodes between its opening and closing tags.
type node struct {
	name     string   // lower case, without < >
	args     []string // whitespace-separated values after the name
	value    string   // everything after the name, trimmed, for values with spaces
	line     int
	block    bool
	children []*node // block only
}

// label returns the node name that error messages use: "smtp-listener" or "<source>".
func (n *node) label() string {
	if n.block {
		return "<" + n.name + ">"
	}
	return n.name
}

// parser carries the file name and the errors of both passes.
type parser struct {
	file string
	errs ErrorList
}

func (p *parser) errorf(line int, directive, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Directive: directive, Msg: fmt.Sprintf(format, args...)})
}

// result sorts the errors by line and keeps the first maxErrors, ending
// with a marker that more were found.
func (p *parser) result() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	if len(p.errs) > maxErrors {
		more := p.errs[maxErrors]
		p.errs = append(p.errs[:maxErrors:maxErrors], &Error{File: p.file, Line: more.Line, Msg: "too many errors, stopping"})
	}
	return p.errs
}

// tree runs the first pass. It splits data into lines, strips comments and
// matches block tags. It returns the top-level node, whose children are the
// file's top-level directives and blocks. Mismatched tags are reported and
// the tree is repaired as well as possible, so the second pass can still
// report problems inside the blocks.
func (p *parser) tree(data []byte) *node {
	root := &node{block: true}
	stack := []*node{root}

	for i, lineNo := 0, 1; i < len(data); lineNo++ {
		// Split off one line. A CRLF ending is accepted.
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			end = len(data) - i
		}
		raw := data[i : i+end]
		i += end + 1
		raw = bytes.TrimSuffix(raw, []byte("\r"))

		text, ok := p.cleanLine(raw, lineNo)
		if !ok || text == "" {
			continue
		}
		top := stack[len(stack)-1]

		switch {
		case strings.HasPrefix(text, "</"):
			stack = p.closeTag(stack, text, lineNo)

		case strings.HasPrefix(text, "<"):
			n := p.openTag(text, lineNo)
			if n == nil {
				continue
			}
			top.children = append(top.children, n)
			stack = append(stack, n)

		default:
			fields := strings.Fields(text)
			top.children = append(top.children, &node{
				name:  strings.ToLower(fields[0]),
				args:  fields[1:],
				value: strings.TrimSpace(text[len(fields[0]):]),
				line:  lineNo,
			})
		}
	}

	for _, open := range stack[1:] {
		p.errorf(open.line, open.label(), "block not closed (missing </%s>)", open.name)
	}
	return root
}

// cleanLine checks one raw line and removes its comment and surrounding
// whitespace. A '#' starts a comment at the start of a line or after a
// space or tab, so values such as URL fragments keep an inner '#'.
func (p *parser) cleanLine(raw []byte, lineNo int) (string, bool) {
	if !utf8.Valid(raw) {
		p.errorf(lineNo, "", "invalid UTF-8")
		return "", false
	}
	for _, c := range raw {
		if c < 0x20 && c != '\t' || c == 0x7f {
			p.errorf(lineNo, "", "invalid control character %q", c)
			return "", false
		}
	}

	text := string(raw)
	for j := 0; j < len(text); j++ {
		if text[j] == '#' && (j == 0 || text[j-1] == ' ' || text[j-1] == '\t') {
			text = text[:j]
			break
		}
	}
	return strings.TrimSpace(text), true
}

// openTag parses "<kind argument...>". It returns nil after reporting a
// malformed tag.
func (p *parser) openTag(text string, lineNo int) *node {
	inner, ok := strings.CutSuffix(text[1:], ">")
	fields := strings.Fields(inner)
	if !ok || len(fields) == 0 || strings.ContainsAny(inner, "<>") {
		p.errorf(lineNo, "", "malformed block tag %q: want <kind argument>", text)
		return nil
	}
	return &node{
		name:  strings.ToLower(fields[0]),
		args:  fields[1:],
		value: strings.TrimSpace(inner[len(fields[0]):]),
		line:  lineNo,
		block: true,
	}
}

// closeTag matches "</kind>" against the open blocks and returns the new
// stack. A closing tag for a block further down the stack also closes the
// blocks above it, and each of those is reported as not closed. A closing
// tag that matches no open block is reported and ignored.
func (p *parser) closeTag(stack []*node, text string, lineNo int) []*node {
	inner, ok := strings.CutSuffix(text[2:], ">")
	name := strings.ToLower(strings.TrimSpace(inner))
	if !ok || name == "" || strings.ContainsAny(name, "<> \t") {
		p.errorf(lineNo, "", "malformed closing tag %q: want </kind>", text)
		return stack
	}

	for i := len(stack) - 1; i > 0; i-- {
		if stack[i].name != name {
			continue
		}
		for _, open := range stack[i+1:] {
			p.errorf(open.line, open.label(), "block not closed (missing </%s> before </%s> at line %d)", open.name, name, lineNo)
		}
		return stack[:i]
	}
	if len(stack) > 1 {
		top := stack[len(stack)-1]
		p.errorf(lineNo, "</"+name+">", "no open <%s> block (inside <%s> from line %d)", name, top.name, top.line)
	} else {
		p.errorf(lineNo, "</"+name+">", "no open <%s> block", name)
	}
	return stack
}
