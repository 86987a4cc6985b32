-- Version 5: how old a firmware may still use this database (after an OTA rollback).
-- `readable_by` is the lowest schema version whose code can keep reading and writing this
-- database as it is. A migration that only adds (tables, indexes, columns with defaults,
-- triggers) leaves it alone, so a rollback to the previous firmware keeps working on the same
-- file and the audit records written by the newer one stay in the chain; a migration that
-- changes what older code relies on raises it to its own version.
CREATE TABLE schema_compat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    readable_by INTEGER NOT NULL CHECK (readable_by >= 1)
);
INSERT INTO schema_compat (id, readable_by) VALUES (1, 1);
