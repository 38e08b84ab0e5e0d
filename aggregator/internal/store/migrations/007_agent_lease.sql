-- 007: agent liveness as a lease. agents.connected alone cannot be trusted:
-- the replica that holds an agent's connection clears it when the
-- connection ends, but a replica that crashes (SIGKILL, host lost) never
-- does. So the holding replica also renews lease_until at the agent's hello
-- and at each of its heartbeats, to three heartbeat intervals ahead (by the
-- database's clock: every replica judges by the same one). An agent is live
-- while a replica says it holds the connection AND that replica's lease has
-- not run out: within three heartbeat intervals of its last sign of life a
-- silent agent shows disconnected on every replica.
ALTER TABLE agents ADD COLUMN lease_until timestamptz;

-- Agents connected when this migration runs keep their connection for the
-- lease of the default heartbeat interval (10 s); their next heartbeat
-- renews it.
UPDATE agents SET lease_until = last_seen + interval '30 seconds' WHERE connected AND revoked_at IS NULL;

-- agent_is_live is THE definition of "connected" for every reader: the
-- registry (GET /agents, /system/health, metrics, the CLI) and the site
-- counts. A plain SQL function, so the planner inlines it.
CREATE FUNCTION agent_is_live(connected boolean, lease_until timestamptz) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(connected AND lease_until > now(), false) $$;
