-- The certified public key of each certificate (authorized_keys format, no
-- comment): the ssh-cert provider's authorized-keys mode prints it for sshd's
-- AuthorizedKeysCommand. Rows from before this migration keep an empty key.
ALTER TABLE ssh_certs ADD COLUMN public_key TEXT NOT NULL DEFAULT '';

-- The revocation list reads the certificates that are still valid (valid_before
-- after now) and the host agent looks plain keys up by fingerprint.
CREATE INDEX ssh_certs_valid_before ON ssh_certs (valid_before);
CREATE INDEX ssh_certs_fingerprint ON ssh_certs (fingerprint);
