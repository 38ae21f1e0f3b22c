-- Expired sign-in steps are deleted as new ones are stored (PutAuthFlow):
-- the index keeps that cheap however many are waiting.
CREATE INDEX auth_flows_expires_at ON auth_flows (expires_at);
