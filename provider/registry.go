// Package provider lists every provider ajar has, in one explicit map (no init()
// registration), so the composition root and the config checker see the same set.
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/provider/awsiam"
	"github.com/ajar-dev/ajar/provider/awsidc"
	"github.com/ajar-dev/ajar/provider/awssg"
	"github.com/ajar-dev/ajar/provider/awsssm"
	"github.com/ajar-dev/ajar/provider/awssts"
	"github.com/ajar-dev/ajar/provider/httpprovider"
	"github.com/ajar-dev/ajar/provider/mysqluser"
	"github.com/ajar-dev/ajar/provider/postgresrole"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/provider/testcounter"
)

// Deps are the shared services providers are built with. A provider that needs a
// dependency that is nil fails in New.
type Deps struct {
	SSHCA *sshcert.CA
	// AWS loads the AWS SDK config of a region for the AWS providers
	// (awsx.DefaultLoader in ajar serve: the SDK's default chain, honouring
	// AWS_ENDPOINT_URL).
	AWS awsx.Loader
	// TestOnly enables the providers that exist only for ajar's own tests
	// (testonly-counter). ajar serve sets it only in dev mode with
	// AJAR_TESTONLY_PROVIDERS=1.
	TestOnly bool
}

// Kind is one provider type.
type Kind struct {
	// Check returns every problem with a target's config, with field paths
	// relative to the config. It needs no Deps, so config files can be checked
	// without starting anything.
	Check func(config json.RawMessage) ajar.Problems
	// New builds the provider for one target. It fails if Check finds problems.
	New func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error)
	// IAMPolicy, for AWS providers, returns the IAM statements ajar itself needs
	// to manage a target with this config ("ajar aws iam-policy").
	IAMPolicy func(target string, config json.RawMessage) ([]awsx.Statement, error)
}

// Kinds maps the provider name used in the policy file to its Kind.
var Kinds = map[string]Kind{
	awssg.Name:  awsKind(awssg.CheckConfig, awssg.IAMPolicy, awssg.New),
	awsidc.Name: awsKind(awsidc.CheckConfig, awsidc.IAMPolicy, awsidc.New),
	awsiam.Name: awsKind(awsiam.CheckConfig, awsiam.IAMPolicy, awsiam.New),
	awsssm.Name: awsKind(awsssm.CheckConfig, awsssm.IAMPolicy, awsssm.New),
	awssts.Name: awsKind(awssts.CheckConfig, awssts.IAMPolicy, awssts.New),
	sshcert.Name: {
		Check: sshcert.CheckConfig,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			if deps.SSHCA == nil {
				return nil, errors.New("ssh-cert provider needs Deps.SSHCA")
			}
			p, err := sshcert.New(target, config, deps.SSHCA)
			if err != nil {
				return nil, err // not p: a nil *Provider in an interface is not nil
			}
			return p, nil
		},
	},
	httpprovider.Name: {
		Check: httpprovider.CheckConfig,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			p, err := httpprovider.New(target, config)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	},
	mysqluser.Name: {
		Check: mysqluser.CheckConfig,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			p, err := mysqluser.New(target, config)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	},
	postgresrole.Name: {
		Check: postgresrole.CheckConfig,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			p, err := postgresrole.New(target, config)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	},
	testcounter.Name: {
		Check: testcounter.CheckConfig,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			p, err := testcounter.New(config, deps.TestOnly)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	},
}

// CheckTarget checks a target's provider name and config (the signature of
// policy.CheckTarget). An unknown provider is one Problem with an empty Field (the
// caller adds its path) naming the known providers.
func CheckTarget(provider string, config json.RawMessage) ajar.Problems {
	k, ok := Kinds[provider]
	if !ok {
		return ajar.Problems{{
			Message: fmt.Sprintf("unknown provider %q (known: %s)", provider, strings.Join(names(), ", ")),
		}}
	}
	return k.Check(config)
}

// names returns the known provider names, sorted.
func names() []string {
	out := make([]string, 0, len(Kinds))
	for n := range Kinds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// awsKind is the Kind of an AWS provider package: built with Deps.AWS.
func awsKind[P ajar.Provider](
	check func(json.RawMessage) ajar.Problems,
	iamPolicy func(string, json.RawMessage) ([]awsx.Statement, error),
	build func(string, json.RawMessage, awsx.Loader) (P, error),
) Kind {
	return Kind{
		Check:     check,
		IAMPolicy: iamPolicy,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			if deps.AWS == nil {
				return nil, errors.New("AWS providers need Deps.AWS")
			}
			p, err := build(target, config, deps.AWS)
			if err != nil {
				return nil, err // not p: a nil *Provider in an interface is not nil
			}
			return p, nil
		},
	}
}
