-- 006: indexes for the inventory read API (GET /vms, /hosts, /clusters,
-- /datastores, /sites): paging by name, VMs by host and cluster, and the
-- containment filters on tags and datastores. Plain SQL: the same with and
-- without TimescaleDB (inventory_objects is an ordinary table either way).

-- Live objects of a kind in name order: the default sort of every list, and
-- the lookup of a cluster, host or datacenter by name.
CREATE INDEX inventory_objects_live_name_idx ON inventory_objects (kind, name) WHERE deleted_at IS NULL;

-- VMs by host and by cluster: the host and cluster filters of GET /vms and
-- the VM counts of hosts and clusters.
CREATE INDEX inventory_objects_vm_host_idx ON inventory_objects (site, source, (props->>'host_id'))
    WHERE kind = 'vm' AND deleted_at IS NULL;
CREATE INDEX inventory_objects_vm_cluster_idx ON inventory_objects (site, source, (props->>'cluster_id'))
    WHERE kind = 'vm' AND deleted_at IS NULL;

-- VMs by tag ("category/name", props.tags @> '["…"]') and by datastore
-- (props.datastore_ids @> '["datastore-11"]').
CREATE INDEX inventory_objects_vm_tags_idx ON inventory_objects USING gin ((props->'tags') jsonb_path_ops)
    WHERE kind = 'vm' AND deleted_at IS NULL;
CREATE INDEX inventory_objects_vm_datastores_idx ON inventory_objects USING gin ((props->'datastore_ids') jsonb_path_ops)
    WHERE kind = 'vm' AND deleted_at IS NULL;
