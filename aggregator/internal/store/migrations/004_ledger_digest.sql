-- 004: a digest of each batch's payload in the ingest ledger. A redelivered
-- batch has the same (agent, epoch, seq) and the same digest, and is a
-- duplicate; a different digest means the agent's spool was rolled back and
-- reused the seq for new data, which must not be acknowledged as stored.
ALTER TABLE ingest_ledger ADD COLUMN digest bytea;
