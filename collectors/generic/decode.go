package generic

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
)

// fieldErrors are all the problems of one body. They read as one line,
// "field: problem; field: problem", which suits the reason of a 400 answer
// better than errors.Join's newlines; Unwrap keeps them reachable to
// errors.Is and errors.As.
type fieldErrors []error

func (e fieldErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e fieldErrors) Unwrap() []error { return e }

// fieldError is a problem with one field of a body.
type fieldError struct {
	Field, Problem string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Problem }

// problem returns the fieldError for field.
func problem(field, format string, args ...any) error {
	return &fieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// orNil is errs as an error, nil when there are none.
func (e fieldErrors) orNil() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// decodeObject decodes body, a JSON object, into targets, which maps each
// field name onto a pointer to where its value goes. Unlike a json.Decoder
// with DisallowUnknownFields, which stops at the first problem, it reports
// every unknown field and every value of the wrong type. Names match exactly:
// "SHA" is an unknown field, not sha. A null value leaves its target as is.
func decodeObject(body []byte, targets map[string]any) fieldErrors {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return fieldErrors{problem("body", "want a JSON object")}
	}
	var errs fieldErrors
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		target, ok := targets[name]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown field %q", name))
			continue
		}
		if err := json.Unmarshal(raw[name], target); err != nil {
			errs = append(errs, problem(name, "want %s", kindOf(target)))
		}
	}
	return errs
}

// kindOf names the JSON value a target takes, for errors.
func kindOf(target any) string {
	switch target.(type) {
	case *bool:
		return "true or false"
	default:
		return "a string"
	}
}

// maxText bounds free-text identifiers: ids end up in message headers.
const maxText = 256

// checkText checks an identifier-like field: present when required, at most
// maxText bytes, no control characters (they would corrupt the headers that
// carry event ids).
func checkText(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return problem(field, "required")
	case len(v) > maxText:
		return problem(field, "longer than %d bytes", maxText)
	case strings.ContainsFunc(v, unicode.IsControl):
		return problem(field, "%q contains control characters", v)
	}
	return nil
}

// checkRepo checks owner/name (or group/subgroup/project): segments without
// whitespace or colons (which separate the parts of event ids), none empty.
func checkRepo(field, v string, required bool) error {
	if err := checkText(field, v, required); err != nil || v == "" {
		return err
	}
	segments := strings.Split(v, "/")
	if len(segments) < 2 || slices.Contains(segments, "") || strings.ContainsFunc(v, func(r rune) bool { return r == ':' || unicode.IsSpace(r) }) {
		return problem(field, "%q is not owner/name", v)
	}
	return nil
}

// checkSHA checks a commit id: 7 to 64 hex digits, as abbreviated or full
// SHA-1 and SHA-256 ids are.
func checkSHA(field, v string, required bool) error {
	if v == "" {
		if required {
			return problem(field, "required")
		}
		return nil
	}
	ok := len(v) >= 7 && len(v) <= 64
	for _, c := range v {
		ok = ok && ('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F')
	}
	if !ok {
		return problem(field, "%q is not a hex commit sha", v)
	}
	return nil
}

// parseTime reads an optional RFC 3339 time into *t; "" leaves it zero.
func parseTime(field, v string, t *time.Time) error {
	if v == "" {
		return nil
	}
	parsed, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return problem(field, "%q is not an RFC 3339 time like 2026-01-05T10:04:30Z", v)
	}
	// Nothing doraflow measures happened before 1970; such a time is a
	// zero value that slipped through a client.
	if parsed.Before(time.Unix(0, 0)) {
		return problem(field, "%q is before 1970", v)
	}
	*t = parsed.UTC()
	return nil
}

// collect appends the non-nil errors to e, keeping one problem per field,
// the first found: a sha of the wrong type is not also reported as missing.
func (e *fieldErrors) collect(errs ...error) {
	for _, err := range errs {
		if err != nil && !e.has(err) {
			*e = append(*e, err)
		}
	}
}

// has reports whether e already holds a problem with err's field.
func (e fieldErrors) has(err error) bool {
	f, ok := err.(*fieldError)
	if !ok {
		return false
	}
	for _, prev := range e {
		if p, ok := prev.(*fieldError); ok && p.Field == f.Field {
			return true
		}
	}
	return false
}
