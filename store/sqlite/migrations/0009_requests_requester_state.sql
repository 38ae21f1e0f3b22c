-- One index serves both lookups of a requester's live requests that run on
-- every request (0007 had one each): the per-user limit on open requests
-- seeks (requester, state) for each open state, and "ajar ssh" finding a
-- request to reuse seeks (requester, state, target, params). One index entry
-- less to write per request and per change of state.
DROP INDEX requests_reuse;
DROP INDEX requests_requester_state;
CREATE INDEX requests_requester_state ON requests (requester, state, target, params);
