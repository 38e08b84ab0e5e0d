-- 010: collection gaps. Besides the batches a spool dropped, ingest_gaps
-- records samples an agent could not read from their source at all, e.g.
-- after an outage longer than vCenter keeps them (reason "beyond vCenter
-- retention"). Such a record says which samples are missing:
--
--   source       the vCenter/ESXi endpoint (as series.source)
--   entity_kind  vm, host, cluster, datastore; NULL: every entity of source
--   entity_ids   the morefs concerned; NULL: every entity of entity_kind
--   counters     the counters missing; NULL: all of them
--   interval_s   the sampling interval of the missing samples (20 for
--                realtime data), NULL if unknown
--
-- over [first_ts, last_ts]. All NULL for a spool gap, which concerns the
-- whole site. A collection gap drops no batch: batches and bytes are 0, and
-- (epoch, from_seq, to_seq) are those of the batch that carried the record,
-- which keeps the unique key of the table meaningful.
--
-- Plain SQL: the same with and without TimescaleDB.
ALTER TABLE ingest_gaps
    ADD COLUMN source      text,
    ADD COLUMN entity_kind text,
    ADD COLUMN entity_ids  text[],
    ADD COLUMN counters    text[],
    ADD COLUMN interval_s  integer;

-- Coverage of a site over a time range: the gaps that end at or after the
-- range's start (few, for a recent range), then the overlap test on
-- first_ts and the entity match.
CREATE INDEX ingest_gaps_site_time_idx ON ingest_gaps (site, last_ts, first_ts);

-- Coverage of one entity: entity_ids @> ARRAY['vm-42'].
CREATE INDEX ingest_gaps_entities_idx ON ingest_gaps USING gin (entity_ids) WHERE entity_ids IS NOT NULL;
