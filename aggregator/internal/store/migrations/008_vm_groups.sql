-- 008: the user side of VMs — fields an operator keeps on a VM (owner,
-- description, labels) and VM groups, static and rule-based — so that
-- groups can filter lists and limit a user's data scope.

-- vm_user_fields are kept apart from inventory_objects: the agent owns the
-- inventory row, the operator owns these, and neither write path touches
-- the other's.
CREATE TABLE vm_user_fields (
    site        text NOT NULL,
    source      text NOT NULL,
    moref       text NOT NULL,
    description text NOT NULL DEFAULT '',
    owner       text NOT NULL DEFAULT '',
    labels      jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT '',
    PRIMARY KEY (site, source, moref)
);
CREATE INDEX vm_user_fields_labels_idx ON vm_user_fields USING gin (labels jsonb_path_ops);

-- A group's members are its static members plus, when rule is not empty,
-- every live VM the rule matches (evaluated at read time, so membership
-- follows the inventory without a refresh). The rule is a JSON object of
-- conditions that must all hold: site, name_like (a LIKE pattern made from
-- the name glob), folder (a path prefix), tags (any of), cluster and host
-- (by name), labels (all of).
CREATE TABLE vm_groups (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    rule        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT ''
);

CREATE TABLE vm_group_members (
    group_id uuid NOT NULL REFERENCES vm_groups (id) ON DELETE CASCADE,
    site     text NOT NULL,
    source   text NOT NULL,
    moref    text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, site, source, moref)
);
CREATE INDEX vm_group_members_vm_idx ON vm_group_members (site, source, moref);

-- vm_rule_matches is THE evaluation of a group rule against a VM, used by
-- every reader (lists, the group filter, data scope). An empty rule
-- matches nothing: such a group has static members only.
CREATE FUNCTION vm_rule_matches(r jsonb, v_site text, v_source text, v_moref text, v_name text, v_path text, v_props jsonb)
    RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT r <> '{}'::jsonb
       AND (NOT (r ? 'site') OR v_site = r->>'site')
       AND (NOT (r ? 'name_like') OR v_name ILIKE r->>'name_like')
       AND (NOT (r ? 'folder') OR starts_with(v_path, r->>'folder'))
       AND (NOT (r ? 'tags') OR (jsonb_typeof(v_props->'tags') = 'array'
            AND v_props->'tags' ?| ARRAY(SELECT jsonb_array_elements_text(r->'tags'))))
       AND (NOT (r ? 'labels') OR EXISTS (SELECT 1 FROM vm_user_fields f
            WHERE f.site = v_site AND f.source = v_source AND f.moref = v_moref AND f.labels @> (r->'labels')))
       AND (NOT (r ? 'cluster') OR EXISTS (SELECT 1 FROM inventory_objects c WHERE c.site = v_site AND c.source = v_source
            AND c.kind = 'cluster' AND c.moref = v_props->>'cluster_id' AND c.name = r->>'cluster'))
       AND (NOT (r ? 'host') OR EXISTS (SELECT 1 FROM inventory_objects h WHERE h.site = v_site AND h.source = v_source
            AND h.kind = 'host' AND h.moref = v_props->>'host_id' AND h.name = r->>'host'))
$$;
