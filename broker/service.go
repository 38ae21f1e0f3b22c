package broker

import (
	"context"
	"errors"

	"github.com/ajar-dev/ajar"
)

var errTODO = errors.New("not implemented yet")

// Service is ajar's core. STUB: signatures are final, bodies are being written.
type Service struct{}

// Authenticate returns the user owning an API token. EUNAUTH if unknown.
func (s *Service) Authenticate(ctx context.Context, token string) (ajar.User, error) {
	return ajar.User{}, errTODO
}

// Targets lists what u may request.
func (s *Service) Targets(ctx context.Context, u ajar.User) ([]TargetInfo, error) {
	return nil, errTODO
}

// CreateRequest validates and stores a request; auto-approved requests are granted before it returns.
func (s *Service) CreateRequest(ctx context.Context, u ajar.User, in CreateInput) (*ajar.Request, error) {
	return nil, errTODO
}

// GetRequest returns a request u may see (ENOTFOUND otherwise).
func (s *Service) GetRequest(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return nil, errTODO
}

// ListRequests lists the requests u may see.
func (s *Service) ListRequests(ctx context.Context, u ajar.User, in ListInput) ([]*ajar.Request, error) {
	return nil, errTODO
}

// Approve records u's approval. EFORBIDDEN for self-approval or a non-approver.
func (s *Service) Approve(ctx context.Context, u ajar.User, id, comment string) (*ajar.Request, error) {
	return nil, errTODO
}

// Deny ends a pending request. The reason is required.
func (s *Service) Deny(ctx context.Context, u ajar.User, id, reason string) (*ajar.Request, error) {
	return nil, errTODO
}

// Revoke ends an active request early (requester or admin).
func (s *Service) Revoke(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return nil, errTODO
}

// Cancel withdraws a request that has not been granted (requester only).
func (s *Service) Cancel(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return nil, errTODO
}

// IssueSSHCert certifies publicKey for u's active request id.
func (s *Service) IssueSSHCert(ctx context.Context, u ajar.User, id string, publicKey []byte) (*SSHCertOutput, error) {
	return nil, errTODO
}

// SSHCA returns the SSH CA public key in authorized_keys format.
func (s *Service) SSHCA(ctx context.Context) (string, error) { return "", errTODO }

// Audit lists audit events u may read (admins: all; others: subjects of requests they can see, Subject required).
func (s *Service) Audit(ctx context.Context, u ajar.User, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	return nil, errTODO
}

// Checkpoint signs the audit log's current head (admins only) and returns the signed note text.
func (s *Service) Checkpoint(ctx context.Context, u ajar.User) ([]byte, error) {
	return nil, errTODO
}

// AuditKey returns the note verifier key for checkpoints (public).
func (s *Service) AuditKey() string { return "" }

// WhoAmI returns u with whether it is an admin.
func (s *Service) WhoAmI(ctx context.Context, u ajar.User) (Identity, error) { return Identity{}, errTODO }
