package policy

import _ "embed"

//go:embed demo.yaml
var demo []byte

// Demo returns the demo policy file (demo.yaml): three users, one SSH
// certificate target and one rule with an approval step and an auto-approve
// condition. It is what `ajar serve --dev` runs with.
func Demo() []byte { return append([]byte(nil), demo...) }

// DemoPolicy parses the demo policy file with check; see Parse.
func DemoPolicy(check CheckTarget) (*Policy, error) { return Parse(demo, check) }
