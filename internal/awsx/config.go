package awsx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
)

// Fields decodes one JSON object of a provider config strictly and collects every
// problem with its field path, so a config is checked in one pass (all problems at
// once, like the policy file). Unknown fields are problems, and names match
// exactly: json's case folding cannot let "Region" through.
type Fields struct {
	prefix string
	m      map[string]json.RawMessage
	probs  *ajar.Problems
	// notObject is set when the config is not an object at all: that one problem
	// is reported, not every field as missing.
	notObject bool
}

// DecodeFields reads raw (an object, or empty/null for no fields) and reports
// every field that is not in known.
func DecodeFields(raw json.RawMessage, known ...string) *Fields {
	f := &Fields{m: map[string]json.RawMessage{}, probs: &ajar.Problems{}}
	f.object(raw, "", known)
	return f
}

func (f *Fields) object(raw json.RawMessage, field string, known []string) {
	slices.Sort(known)
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		if err := json.Unmarshal(t, &f.m); err != nil || f.m == nil {
			f.m = map[string]json.RawMessage{}
			f.Add(field, "must be an object with the fields %s", strings.Join(known, ", "))
			f.notObject = true
			return
		}
	}
	keys := make([]string, 0, len(f.m))
	for k := range f.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			f.Add(k, "unknown field (known: %s)", strings.Join(known, ", "))
		}
	}
}

// Problems returns every problem found so far, or nil.
func (f *Fields) Problems() ajar.Problems {
	if len(*f.probs) == 0 {
		return nil
	}
	return *f.probs
}

// Path returns the full field path of name.
func (f *Fields) Path(name string) string {
	switch {
	case f.prefix == "":
		return name
	case name == "":
		return f.prefix
	}
	return f.prefix + "." + name
}

// Add records a problem with field name (relative to this object).
func (f *Fields) Add(name, format string, args ...any) {
	if f.notObject && len(*f.probs) > 0 {
		return
	}
	*f.probs = append(*f.probs, ajar.Problem{Field: f.Path(name), Message: fmt.Sprintf(format, args...)})
}

// Has reports whether the field is present and not null.
func (f *Fields) Has(name string) bool {
	v, ok := f.m[name]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// Object returns the nested object name as Fields sharing this one's problems; a
// missing field gives an empty object.
func (f *Fields) Object(name string, known ...string) *Fields {
	sub := &Fields{prefix: f.Path(name), m: map[string]json.RawMessage{}, probs: f.probs}
	if f.Has(name) {
		sub.object(f.m[name], "", known)
	}
	return sub
}

// String returns a string field; a missing required field is a problem.
func (f *Fields) String(name string, required bool) string {
	if !f.Has(name) {
		if required {
			f.Add(name, "required")
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(f.m[name], &s); err != nil {
		f.Add(name, "must be a string")
		return ""
	}
	if required && strings.TrimSpace(s) == "" {
		f.Add(name, "required: must not be empty")
	}
	return s
}

// Int returns an integer field and whether it was present and valid.
func (f *Fields) Int(name string) (int, bool) {
	if !f.Has(name) {
		return 0, false
	}
	var n int
	if err := json.Unmarshal(f.m[name], &n); err != nil {
		f.Add(name, "must be a whole number")
		return 0, false
	}
	return n, true
}

// Strings returns a list of strings, reporting a wrong type at the element
// ("instance_ids[2]").
func (f *Fields) Strings(name string) []string {
	if !f.Has(name) {
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(f.m[name], &elems); err != nil {
		f.Add(name, "must be a list of strings")
		return nil
	}
	out := make([]string, 0, len(elems))
	for i, e := range elems {
		var s string
		if err := json.Unmarshal(e, &s); err != nil {
			f.Add(fmt.Sprintf("%s[%d]", name, i), "must be a string")
			continue
		}
		out = append(out, s)
	}
	return out
}

// StringMap returns an object of strings.
func (f *Fields) StringMap(name string) map[string]string {
	if !f.Has(name) {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(f.m[name], &raw); err != nil || raw == nil {
		f.Add(name, "must be a mapping of names to strings")
		return nil
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			f.Add(name+"."+k, "must be a string")
			continue
		}
		out[k] = s
	}
	return out
}

// Duration returns a duration written in Go syntax ("30s", "2m"); it must be
// positive.
func (f *Fields) Duration(name string) time.Duration {
	s := f.String(name, false)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		f.Add(name, "%q is not a duration: use Go syntax like 30s or 2m", s)
	case d <= 0:
		f.Add(name, "must be positive, not %s", s)
	}
	return d
}

// Common value checks, shared by the providers' configs.
var (
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	iamNameRE   = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	iamGroupRE  = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	iamRoleARN  = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([\x21-\x7e]*/)?([\w+=,.@-]{1,64})$`)
	placeholder = regexp.MustCompile(`\{[^{}]*\}`)
)

// Region reads a required AWS region such as "us-east-1".
func (f *Fields) Region(name string, required bool) string {
	r := f.String(name, required)
	if r != "" && !regionRE.MatchString(r) {
		f.Add(name, "%q is not an AWS region (like us-east-1)", r)
	}
	return r
}

// AccountID reads a 12-digit AWS account id. It must be a quoted string: YAML
// reads an unquoted one as a number and drops its leading zeros.
func (f *Fields) AccountID(name string, required bool) string {
	if f.Has(name) {
		if t := bytes.TrimSpace(f.m[name]); len(t) > 0 && t[0] >= '0' && t[0] <= '9' {
			f.Add(name, "must be a quoted string of 12 digits, like \"012345678901\" (unquoted, YAML reads it as a number and drops leading zeros)")
			return ""
		}
	}
	a := f.String(name, required)
	if a != "" && !accountRE.MatchString(a) {
		f.Add(name, "%q is not an AWS account id (12 digits)", a)
	}
	return a
}

// ValidIAMName reports whether s is a valid IAM user or role name.
func ValidIAMName(s string) bool { return iamNameRE.MatchString(s) }

// ValidIAMGroupName reports whether s is a valid IAM group name.
func ValidIAMGroupName(s string) bool { return iamGroupRE.MatchString(s) }

// ParseRoleARN splits an IAM role ARN into partition, account and role name. ok
// is false if arn is not a role ARN.
func ParseRoleARN(arn string) (partition, account, name string, ok bool) {
	m := iamRoleARN.FindStringSubmatch(arn)
	if m == nil {
		return "", "", "", false
	}
	parts := strings.Split(arn, ":")
	return parts[1], parts[4], m[3], true
}

// Bool returns a boolean field (false when missing).
func (f *Fields) Bool(name string) bool {
	if !f.Has(name) {
		return false
	}
	var b bool
	if err := json.Unmarshal(f.m[name], &b); err != nil {
		f.Add(name, "must be true or false")
	}
	return b
}
