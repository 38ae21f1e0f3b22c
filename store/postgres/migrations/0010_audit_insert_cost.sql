-- The per-row PL/pgSQL trigger of migration 0008 (the requester and target
-- of an event's request, for audit search) cost the server more than the rest
-- of an audit INSERT: a function call per event. The store now names them in
-- its INSERT for the requests its transaction wrote (the rows it inserted or
-- updated, which hold those values until it commits), so the trigger runs
-- only for a row that names neither: an event about a request the transaction
-- did not write, about no request at all, or from an INSERT that leaves the
-- columns out (as every INSERT did before this migration). It fills them in
-- as before. The chain's checks (migrations 0001 and 0009) do not change.

DROP TRIGGER audit_events_request ON audit_events;
CREATE TRIGGER audit_events_request BEFORE INSERT ON audit_events
	FOR EACH ROW WHEN (NEW.requester IS NULL AND NEW.target IS NULL)
	EXECUTE FUNCTION audit_events_request();
