-- "ajar ssh" reuses the caller's live request for a target with the same
-- parameters (RequestFilter.SameParams): one index lookup, however many
-- requests the caller has.
CREATE INDEX requests_reuse ON requests (requester, target, params, state);
