-- 018: the history of a cluster's VMs, pre-aggregated per hour, so that a
-- chart of one counter over all the VMs of a 1,000-VM cluster reads 24 rows a
-- day instead of 24,000 (store.QueryClusterVMs, GET /clusters/{id}/metrics
-- with of=vms).
--
-- cluster_vm_1h holds, per (cluster, counter, hour), the hourly buckets of
-- the cluster's VMs' series (instance "", the VM as a whole) combined: the
-- min of their vmin, the max of their vmax, the sum of their vsum and vcnt,
-- and how many VMs had a value. Combining them again per step gives exactly
-- what the VMs' hourly (or daily) buckets give combined per step.
--
-- cluster_vm_members records, per cluster, which series the rows combine
-- (sorted ids) and from which hour on they are maintained. The rollup job
-- (store.RunRollups, plain PostgreSQL only) recomputes the rows of the
-- hours it recomputes in samples_1h, in the same transaction, for the
-- recorded members; when a cluster's members change (a VM created,
-- forgotten or moved to another cluster, a new series), it rebuilds that
-- cluster's rows over store.ClusterHorizon and records the new members in
-- one transaction. A query uses the rows only when the recorded members are
-- the cluster's current ones and the range lies within the maintained hours;
-- otherwise it answers from the VMs' own series and says so.
CREATE TABLE cluster_vm_1h (
    site    text NOT NULL,
    source  text NOT NULL,
    cluster text NOT NULL,
    counter text NOT NULL,
    ts      timestamptz NOT NULL,
    vmin    real NOT NULL,
    vmax    real NOT NULL,
    vsum    float8 NOT NULL,
    vcnt    int NOT NULL CHECK (vcnt > 0),
    nvm     int NOT NULL,
    PRIMARY KEY (site, source, cluster, counter, ts) INCLUDE (vmin, vmax, vsum, vcnt, nvm)
);

CREATE TABLE cluster_vm_members (
    site       text NOT NULL,
    source     text NOT NULL,
    cluster    text NOT NULL,
    series     bigint[] NOT NULL,
    -- The counters of those series, by name, and their units.
    counters   text[] NOT NULL,
    units      text[] NOT NULL,
    built_from timestamptz NOT NULL,
    built_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, source, cluster)
);

-- The VMs of one cluster are found by inventory_objects_vm_cluster_idx
-- (migration 006).
