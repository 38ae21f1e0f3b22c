-- Leases: named locks with an owner and an end, for work done outside a
-- transaction (see Tx.AcquireLease). A row whose until is past is free.
CREATE TABLE leases (
	name  text COLLATE "C" NOT NULL PRIMARY KEY,
	owner text NOT NULL,
	until text COLLATE "C" NOT NULL
);
