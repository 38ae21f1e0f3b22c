package keys

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
)

// LoadOrCreate returns the secret stored sealed under name, opened with sealer.
// If there is none it calls generate, seals and stores the result. When several
// replicas start at once, exactly one key wins: a replica whose PutKey reports
// ECONFLICT reads and returns the winner's key, never its own. created reports
// whether this call stored the key.
//
// Pass ks = ajar.StoreKeys(st), which runs each call in its own transaction: on
// PostgreSQL a lost race (a unique violation) aborts the transaction it happens
// in, so the winner's key can only be read in a new one.
func LoadOrCreate(ctx context.Context, ks ajar.KeyStore, sealer ajar.Sealer, name string, generate func() ([]byte, error)) (secret []byte, created bool, err error) {
	secret, err = load(ctx, ks, sealer, name)
	if ajar.ErrorCode(err) != ajar.ENOTFOUND {
		return secret, false, err
	}

	secret, err = generate()
	if err != nil {
		return nil, false, fmt.Errorf("generate key %q: %w", name, err)
	}
	sealed, err := sealer.Seal(name, secret)
	if err != nil {
		return nil, false, fmt.Errorf("seal key %q: %w", name, err)
	}
	switch err := ks.PutKey(ctx, name, sealed); ajar.ErrorCode(err) {
	case "":
		return secret, true, nil
	case ajar.ECONFLICT:
		clear(secret)
		secret, err = load(ctx, ks, sealer, name)
		if err != nil {
			return nil, false, fmt.Errorf("another replica stored key %q first: %w", name, err)
		}
		return secret, false, nil
	default:
		return nil, false, fmt.Errorf("store key %q: %w", name, err)
	}
}

// load returns the opened key, or an error whose code is ENOTFOUND if there is none.
func load(ctx context.Context, ks ajar.KeyStore, sealer ajar.Sealer, name string) ([]byte, error) {
	sealed, err := ks.GetKey(ctx, name)
	if err != nil {
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			return nil, err
		}
		return nil, fmt.Errorf("read key %q: %w", name, err)
	}
	secret, err := sealer.Open(name, sealed)
	if err != nil {
		return nil, fmt.Errorf("stored key %q (is this the master key it was sealed with?): %w", name, err)
	}
	return secret, nil
}
