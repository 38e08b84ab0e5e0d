-- 002: authentication, RBAC, sessions, API tokens, the audit log and the
-- login log.
--
-- Built-in roles and their permissions are written by the aggregator at
-- start (auth.SyncBuiltins) from the permission catalog in Go, so that the
-- catalog has one source of truth.

CREATE TABLE roles (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    description text NOT NULL DEFAULT '',
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_permissions (
    role_id    uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission text NOT NULL,
    PRIMARY KEY (role_id, permission)
);

-- A role inherits every permission of its parents, transitively. Cycles are
-- refused by the API; the recursive queries use UNION so a cycle that slips
-- in still terminates.
CREATE TABLE role_parents (
    role_id   uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    parent_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, parent_id),
    CHECK (role_id <> parent_id)
);

-- locked is an administrator's lock (sessions and API tokens stop working);
-- locked_until is the automatic lockout after repeated failed logins, which
-- only refuses new logins. Empty scope arrays mean no data-scope restriction.
CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    username            text NOT NULL,
    email               text NOT NULL DEFAULT '',
    display_name        text NOT NULL DEFAULT '',
    password_hash       text NOT NULL,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    failed_logins       integer NOT NULL DEFAULT 0,
    locked              boolean NOT NULL DEFAULT false,
    locked_until        timestamptz,
    scope_sites         text[] NOT NULL DEFAULT '{}',
    scope_vm_groups     text[] NOT NULL DEFAULT '{}',
    last_login_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_idx ON users (lower(username));
CREATE UNIQUE INDEX users_email_idx ON users (lower(email)) WHERE email <> '';

CREATE TABLE user_roles (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

-- JWT signing keys. The newest usable key signs; every key not yet retired
-- verifies, so rotation never invalidates tokens in flight.
CREATE TABLE jwt_keys (
    kid         text PRIMARY KEY,
    alg         text NOT NULL,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retire_at   timestamptz NOT NULL
);

-- A session is one login: one refresh-token family. Access tokens carry the
-- session id and are refused as soon as revoked_at is set.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text NOT NULL DEFAULT '',
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_active_idx ON sessions (last_seen_at) WHERE revoked_at IS NULL;

-- Refresh tokens, by SHA-256. used_at is set when a token is exchanged; a
-- second exchange of the same token is a reuse and revokes its session.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Personal API tokens, by SHA-256; the token itself is shown once. An empty
-- permissions array means all of the owner's permissions; otherwise the
-- token has the intersection.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    permissions  text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- The operation log. Each row's hash covers its fields and the previous
-- row's hash; seq is contiguous, so a deleted row is as visible as an edited
-- one. audit_chain holds the head so appends from several aggregators are
-- serialized by a row lock.
CREATE TABLE audit_log (
    seq           bigint PRIMARY KEY,
    time          timestamptz NOT NULL,
    source        text NOT NULL,
    actor_type    text NOT NULL,
    actor_id      text NOT NULL DEFAULT '',
    actor_name    text NOT NULL DEFAULT '',
    action        text NOT NULL,
    resource_type text NOT NULL DEFAULT '',
    resource_id   text NOT NULL DEFAULT '',
    summary       text NOT NULL DEFAULT '',
    result        text NOT NULL,
    status        integer NOT NULL DEFAULT 0,
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    request_id    text NOT NULL DEFAULT '',
    latency_us    bigint NOT NULL DEFAULT 0,
    prev_hash     bytea NOT NULL,
    hash          bytea NOT NULL
);
CREATE INDEX audit_log_time_idx ON audit_log (time);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_name, seq);
CREATE INDEX audit_log_action_idx ON audit_log (action, seq);

CREATE TABLE audit_chain (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO audit_chain (id, seq, hash) VALUES (1, 0, '\x');

-- Every login attempt, successful or not.
CREATE TABLE login_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time       timestamptz NOT NULL,
    user_id    uuid,
    username   text NOT NULL,
    result     text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    ip         text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT ''
);
CREATE INDEX login_log_time_idx ON login_log (time);
CREATE INDEX login_log_user_idx ON login_log (lower(username), id);
