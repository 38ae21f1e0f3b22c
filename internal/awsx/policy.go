package awsx

import (
	"encoding/json"
	"net/url"
)

// PolicyVersion is the IAM policy language version every document ajar writes uses.
const PolicyVersion = "2012-10-17"

// Policy is an IAM policy document.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a Policy. Condition maps an operator
// ("DateLessThan") to condition keys and their value (a string or a list of
// strings); encoding/json sorts map keys, so a document always renders the same.
type Statement struct {
	Sid       string                    `json:"Sid,omitempty"`
	Effect    string                    `json:"Effect"`
	Action    []string                  `json:"Action"`
	Resource  []string                  `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// NewPolicy returns a document with the current policy version.
func NewPolicy(statements ...Statement) Policy {
	return Policy{Version: PolicyVersion, Statement: statements}
}

// JSON renders p compactly, as IAM stores it (inline policy size limits count
// every byte).
func (p Policy) JSON() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // only strings, lists and maps of them: cannot fail
	}
	return string(b)
}

// Indented renders p for people (docs, "ajar aws iam-policy", golden files).
func (p Policy) Indented() string {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

// ParsePolicy decodes a policy document as IAM returns it from GetRolePolicy or
// GetUserPolicy: URL-encoded JSON (plain JSON is accepted too).
func ParsePolicy(doc string) (Policy, error) {
	if dec, err := url.PathUnescape(doc); err == nil {
		doc = dec
	}
	var p Policy
	err := json.Unmarshal([]byte(doc), &p)
	return p, err
}
