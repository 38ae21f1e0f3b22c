-- "ajar ssh" reuses the caller's live request for a target with the same
-- parameters (RequestFilter.SameParams): one index lookup, however many
-- requests the caller has. params is indexed by its md5: a request's
-- parameters may be longer than a btree entry may be.
CREATE INDEX requests_reuse ON requests (requester, target, md5(params), state);
-- The per-user limit on open requests is counted in every new request's
-- transaction: a seek per open state, however long the requester's history.
CREATE INDEX requests_requester_state ON requests (requester, state);
