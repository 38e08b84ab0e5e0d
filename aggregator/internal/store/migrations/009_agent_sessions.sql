-- 009: agent sessions — one row per connection an agent opened (a hello),
-- kept after it ends, so that a site's history of being online is data:
-- the site timeline, and the "site offline" cause of a gap in a chart.
-- A session ends when the holding replica records the disconnect, or, when
-- that replica died, at its last sign of life (last_seen): readers take
-- least(ended_at, last_seen + lease) as its end, the same lease as
-- agent_is_live.
CREATE TABLE agent_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id     uuid NOT NULL,
    site         text NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz,
    ended_at     timestamptz,
    end_reason   text NOT NULL DEFAULT ''
);
CREATE INDEX agent_sessions_site_idx ON agent_sessions (site, connected_at);
CREATE INDEX agent_sessions_open_idx ON agent_sessions (agent_id) WHERE ended_at IS NULL;
