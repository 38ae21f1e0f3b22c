// Package awsx holds what ajar's AWS providers share: how they get an AWS SDK
// config, how they read AWS error codes, IAM policy documents, the mapping from an
// ajar user to an AWS user name, and strict decoding of their typed configs. It is
// not a provider and imports none.
package awsx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
)

// Loader returns the AWS SDK config ajar uses to call AWS in one region. Providers
// call it once, when they are built.
type Loader func(ctx context.Context, region string) (aws.Config, error)

// DefaultLoader loads the SDK's default configuration for region: credentials from
// the environment, the shared files, or the instance/task role. It honours
// AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>), so the real binary can be
// pointed at an emulator such as moto, and AWS_MAX_ATTEMPTS for the SDK's own
// retries (ajar's scheduler retries on top of them).
func DefaultLoader(ctx context.Context, region string) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS config for %s: %w", region, err)
	}
	return cfg, nil
}

// StaticLoader returns a Loader with fixed credentials that sends every service's
// calls to endpoint (tests against moto). maxAttempts bounds the SDK's retries; 0
// keeps the SDK's default.
func StaticLoader(endpoint, accessKey, secretKey string, maxAttempts int) Loader {
	return func(ctx context.Context, region string) (aws.Config, error) {
		opts := []func(*config.LoadOptions) error{
			config.WithRegion(region),
			config.WithBaseEndpoint(endpoint),
			config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")),
			// Never read the developer's own ~/.aws files in tests.
			config.WithSharedConfigFiles([]string{}),
			config.WithSharedCredentialsFiles([]string{}),
		}
		if maxAttempts > 0 {
			opts = append(opts, config.WithRetryMaxAttempts(maxAttempts))
		}
		return config.LoadDefaultConfig(ctx, opts...)
	}
}

// ErrorCode returns the AWS error code in err's chain ("InvalidPermission.Duplicate",
// "NoSuchEntity"...), or "" when err is not an AWS API error. Providers decide on
// codes, never on message text.
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Partition returns the ARN partition of a region: "aws", "aws-cn" or "aws-us-gov".
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

// KeyedMutex serialises work on one key (one security group rule, one IAM user)
// inside this process, so the read-modify-write of ownership tags by two requests
// for the same access cannot interleave. Other replicas are not covered; the drift
// check repairs what such a race could leave.
type KeyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key and returns its unlock function.
func (k *KeyedMutex) Lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
