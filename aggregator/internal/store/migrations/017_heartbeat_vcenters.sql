-- 017: what the agent's heartbeat now also reports (protocol.Heartbeat):
-- its spool's quota (spool.max_bytes; 0 from agents older than the field,
-- read as "not reported") and the reachability of each vCenter/ESXi
-- endpoint it polls (protocol.VCenterStatus: source, reachable, since,
-- last_ok, last_error), shown on GET /agents[/{id}] and read by the alert
-- engine (spool nearly full, vCenter unreachable). Like plugins (013) the
-- list is replaced whole by each heartbeat; its texts are cleaned of NUL
-- and invalid UTF-8 before they are written (store.heartbeatVCenters), so
-- a hostile or broken error text never fails the heartbeat.
ALTER TABLE agents
    ADD COLUMN spool_max_bytes bigint NOT NULL DEFAULT 0 CHECK (spool_max_bytes >= 0),
    ADD COLUMN vcenters jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(vcenters) = 'array');

-- Rules may watch the vCenters themselves (entity kind vcenter: one
-- instance per endpoint, its id the endpoint's source).
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_entity_kind_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_entity_kind_check
    CHECK (entity_kind IN ('vm', 'host', 'cluster', 'datastore', 'site', 'vcenter'));
