-- 013: the agent's collector plugins as its latest heartbeat reported them
-- (protocol.PluginStatus: name, version, state, restarts, last error and
-- its time, last collect, collects, failures, samples), shown on
-- GET /agents/{id}. Replaced whole by each heartbeat; an agent without
-- plugins (or older than the field) reports an empty list.
ALTER TABLE agents ADD COLUMN plugins jsonb NOT NULL DEFAULT '[]';
