-- Leases: named locks with an owner and an end, for work done outside a
-- transaction (see Tx.AcquireLease). A row whose until is past is free.
CREATE TABLE leases (
	name  TEXT NOT NULL PRIMARY KEY,
	owner TEXT NOT NULL,
	until TEXT NOT NULL
) STRICT;
