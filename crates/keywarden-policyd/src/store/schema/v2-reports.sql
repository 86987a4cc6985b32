-- Version 2: indexes for the reports (`src/reports`). Each report is one SQL statement over the
-- audit trail (history) or the loans table (keys out now); these indexes let every one of them
-- seek instead of scanning the audit table. Rows are appended at the head only, so an index
-- costs one B-tree insert per entry.

-- The unit report (`key LABEL`): every event about one key, in time order.
CREATE INDEX audit_subject_at ON audit(subject, at_ms);
-- The employee report (`user LOGIN`): every event one person caused.
CREATE INDEX audit_actor_at ON audit(actor, at_ms);
-- Denials, alarms, overdue and the reason summary: one kind over a time range.
CREATE INDEX audit_kind_at ON audit(kind, at_ms);
-- The grant a removal or return belongs to (latest grant of that key before it): the rowid
-- (seq) ends each index entry, so "subject = ? AND seq < ? ORDER BY seq DESC LIMIT 1" is a seek.
CREATE INDEX audit_granted_subject ON audit(subject) WHERE kind = 'granted';
-- The end of a loan (first return or lapse of that key after its grant).
CREATE INDEX audit_loan_end_subject ON audit(subject) WHERE kind IN ('returned', 'grant-lapsed');
-- The clearing of an alarm (first alarm-cleared of that subject after it was raised).
CREATE INDEX audit_cleared_subject ON audit(subject) WHERE kind = 'alarm-cleared';
-- The checkouts for one reason code (`reason CODE`), in time order.
CREATE INDEX audit_granted_reason ON audit(json_extract(detail, '$.reason'), at_ms)
    WHERE kind = 'granted';
