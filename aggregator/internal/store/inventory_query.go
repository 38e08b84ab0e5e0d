package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The inventory read side: lists of live inventory objects (VMs, hosts,
// clusters, datastores) filtered, sorted and paged in SQL, one object with
// its placement resolved to names, VM counts, the latest metric values of a
// VM, and sites with their counts. An object is live while deleted_at is
// NULL; deleted objects are not listed and not found.
//
// An object's datacenter is the datacenter of the same source whose path is
// the longest prefix of the object's path (paths are inventory folder paths
// of names, "/Datacenters/DC1/vm/web/web-01").

// SortKey is one sort field of a list query; Desc sorts descending.
type SortKey struct {
	Field string
	Desc  bool
}

// ObjectRef is another inventory object of the same source, by moref, and
// its name ("" when the inventory does not have it).
type ObjectRef struct {
	Moref string
	Name  string
}

// Object is a live inventory object with what the API shows beside it.
type Object struct {
	Site, Source, Kind, Moref, Name string
	ParentMoref, Path               string
	Props                           map[string]any
	FirstSeen, ObservedAt           time.Time
	UpdatedAt                       time.Time
	// Datacenter is the name of the datacenter the object is in ("" when
	// unknown).
	Datacenter string
	// Host is a VM's host; Cluster a VM's or a host's cluster (nil: none).
	Host, Cluster *ObjectRef
	// VMs counts live VMs: on a host, on the hosts of a cluster, or with a
	// disk on a datastore. Hosts counts a cluster's live hosts.
	VMs, Hosts int64
}

// VMDetail is one VM with its whole placement and latest metric values.
type VMDetail struct {
	Object
	ResourcePool *ObjectRef
	Datastores   []ObjectRef
	Latest       []LatestValue
	UserFields   VMUserFields
	Groups       []GroupRef
}

// LatestValue is the newest value of one counter of an entity.
type LatestValue struct {
	Counter, Instance, Unit string
	Value                   float64
	TS                      time.Time
}

// ObjectMatch matches an object by name, or by source and moref when
// Source is set: a filter given as "name or id".
type ObjectMatch struct {
	Name, Source, Moref string
}

func (m ObjectMatch) empty() bool { return m.Name == "" && m.Source == "" }

// VMFilter selects VMs; empty fields do not filter.
type VMFilter struct {
	Site       string
	Datacenter string // datacenter name
	Cluster    ObjectMatch
	Host       ObjectMatch
	PowerState string // props.power_state
	Tools      string // props.tools_running_status
	Tag        string // "category/name", in props.tags
	Group      string // a VM group's id: its members
	Q          string // substring of the name, guest hostname or a guest IP, any case
}

// VMQuery is a page of VMs.
type VMQuery struct {
	VMFilter
	Sort           []SortKey // VMSortFields; default name
	Page, PageSize int       // 1-based page
}

// ObjectQuery is a page of hosts, clusters or datastores.
type ObjectQuery struct {
	Kind           string // KindHost, KindCluster or KindDatastore
	Site           string
	Q              string // substring of the name, any case
	Sort           []SortKey
	Page, PageSize int
}

// Inventory object kinds the read API serves.
const (
	KindVM        = "vm"
	KindHost      = "host"
	KindCluster   = "cluster"
	KindDatastore = "datastore"
)

// numProp is a numeric property as SQL, NULL when it is not a number.
func numProp(alias, key string) string {
	return fmt.Sprintf(`(CASE WHEN jsonb_typeof(%[1]s.props->'%[2]s') = 'number' THEN (%[1]s.props->'%[2]s')::numeric END)`, alias, key)
}

// Sort fields by kind, as SQL on the alias o.
var sortSQL = map[string]map[string]string{
	KindVM: {
		"name": "o.name", "site": "o.site", "updated_at": "o.updated_at",
		"power_state": "o.props->>'power_state'",
		"num_cpu":     numProp("o", "num_cpu"), "memory_mb": numProp("o", "memory_mb"),
	},
	KindHost: {
		"name": "o.name", "site": "o.site", "updated_at": "o.updated_at",
		"connection_state": "o.props->>'connection_state'", "power_state": "o.props->>'power_state'",
		"cpu_cores": numProp("o", "cpu_cores"), "memory_bytes": numProp("o", "memory_bytes"),
	},
	KindCluster: {
		"name": "o.name", "site": "o.site", "updated_at": "o.updated_at",
		"num_hosts": numProp("o", "num_hosts"), "memory_bytes_total": numProp("o", "memory_bytes_total"),
	},
	KindDatastore: {
		"name": "o.name", "site": "o.site", "updated_at": "o.updated_at",
		"type": "o.props->>'type'", "capacity": numProp("o", "capacity"), "free": numProp("o", "free"),
	},
}

// SortFields lists the sort fields of a kind's list (vm, host, cluster,
// datastore), sorted.
func SortFields(kind string) []string {
	out := make([]string, 0, len(sortSQL[kind]))
	for k := range sortSQL[kind] {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// orderBy builds the ORDER BY of a list: the keys (NULLs last either way),
// then name, source and moref so that pages are stable.
func orderBy(kind string, keys []SortKey) (string, error) {
	if len(keys) == 0 {
		keys = []SortKey{{Field: "name"}}
	}
	var parts []string
	for _, k := range keys {
		expr, ok := sortSQL[kind][k.Field]
		if !ok {
			return "", fmt.Errorf("store: unknown sort field %q for %s", k.Field, kind)
		}
		dir := " ASC"
		if k.Desc {
			dir = " DESC"
		}
		parts = append(parts, expr+dir+" NULLS LAST")
	}
	parts = append(parts, "o.name", "o.source", "o.moref")
	return strings.Join(parts, ", "), nil
}

// likePattern is a case-insensitive substring pattern for ILIKE.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// args collects query arguments and returns their placeholders.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// vmWhere is the WHERE clause of a VM filter on the alias o, within the
// data scope sc.
func vmWhere(sc dataScope, f *VMFilter, a *args) string {
	w := []string{"o.kind = 'vm'", "o.deleted_at IS NULL", sc.vmSQL("o", a)}
	if f.Site != "" {
		w = append(w, "o.site = "+a.add(f.Site))
	}
	if f.Datacenter != "" {
		w = append(w, `EXISTS (SELECT 1 FROM inventory_objects d WHERE d.site = o.site AND d.source = o.source
		    AND d.kind = 'datacenter' AND d.deleted_at IS NULL AND d.name = `+a.add(f.Datacenter)+`
		    AND starts_with(o.path, d.path || '/'))`)
	}
	for _, m := range []struct {
		kind, prop string
		match      ObjectMatch
	}{{KindCluster, "cluster_id", f.Cluster}, {KindHost, "host_id", f.Host}} {
		if m.match.empty() {
			continue
		}
		var or []string
		if m.match.Source != "" {
			or = append(or, fmt.Sprintf("(o.source = %s AND o.props->>'%s' = %s)", a.add(m.match.Source), m.prop, a.add(m.match.Moref)))
		}
		if m.match.Name != "" {
			or = append(or, fmt.Sprintf(`EXISTS (SELECT 1 FROM inventory_objects p WHERE p.site = o.site AND p.source = o.source
			    AND p.kind = '%s' AND p.moref = o.props->>'%s' AND p.deleted_at IS NULL AND p.name = %s)`, m.kind, m.prop, a.add(m.match.Name)))
		}
		w = append(w, "("+strings.Join(or, " OR ")+")")
	}
	if f.PowerState != "" {
		w = append(w, "o.props->>'power_state' = "+a.add(f.PowerState))
	}
	if f.Tools != "" {
		w = append(w, "o.props->>'tools_running_status' = "+a.add(f.Tools))
	}
	if f.Tag != "" {
		w = append(w, "o.props->'tags' @> jsonb_build_array("+a.add(f.Tag)+"::text)")
	}
	if f.Group != "" {
		w = append(w, groupMemberSQL("o", a.add([]string{f.Group})))
	}
	if f.Q != "" {
		p := a.add(likePattern(f.Q))
		w = append(w, `(o.name ILIKE `+p+` OR o.props->>'guest_hostname' ILIKE `+p+`
		    OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(o.props->'guest_ips') = 'array'
		        THEN o.props->'guest_ips' ELSE '[]'::jsonb END) ip WHERE ip ILIKE `+p+`))`)
	}
	return strings.Join(w, " AND ")
}

// objectCols are the columns scanObject reads, on the alias o, with the
// datacenter (dc), host (h) and cluster (c) joins of objectJoins.
const objectCols = `o.site, o.source, o.kind, o.moref, o.name, o.parent_moref, o.path, o.props,
	o.first_seen, o.observed_at, o.updated_at, coalesce(dc.name, ''),
	coalesce(o.props->>'host_id', ''), coalesce(h.name, ''), coalesce(o.props->>'cluster_id', ''), coalesce(c.name, '')`

// objectJoins resolve an object's datacenter, host and cluster to names.
const objectJoins = `
	LEFT JOIN inventory_objects h ON h.site = o.site AND h.source = o.source AND h.kind = 'host' AND h.moref = o.props->>'host_id'
	LEFT JOIN inventory_objects c ON c.site = o.site AND c.source = o.source AND c.kind = 'cluster' AND c.moref = o.props->>'cluster_id'
	LEFT JOIN LATERAL (SELECT d.name FROM inventory_objects d WHERE d.site = o.site AND d.source = o.source
	    AND d.kind = 'datacenter' AND d.deleted_at IS NULL AND starts_with(o.path, d.path || '/')
	    ORDER BY length(d.path) DESC LIMIT 1) dc ON true`

// countCols are the VM and host counts of hosts, clusters and datastores
// (zero for other kinds).
const countCols = `,
	CASE o.kind
	WHEN 'host' THEN (SELECT count(*) FROM inventory_objects v WHERE v.site = o.site AND v.source = o.source
	    AND v.kind = 'vm' AND v.deleted_at IS NULL AND v.props->>'host_id' = o.moref)
	WHEN 'cluster' THEN (SELECT count(*) FROM inventory_objects hh JOIN inventory_objects v
	    ON v.site = hh.site AND v.source = hh.source AND v.kind = 'vm' AND v.deleted_at IS NULL AND v.props->>'host_id' = hh.moref
	    WHERE hh.site = o.site AND hh.source = o.source AND hh.kind = 'host' AND hh.deleted_at IS NULL
	    AND hh.props->>'cluster_id' = o.moref)
	WHEN 'datastore' THEN (SELECT count(*) FROM inventory_objects v WHERE v.site = o.site AND v.source = o.source
	    AND v.kind = 'vm' AND v.deleted_at IS NULL AND v.props->'datastore_ids' @> jsonb_build_array(o.moref))
	ELSE 0 END,
	CASE o.kind
	WHEN 'cluster' THEN (SELECT count(*) FROM inventory_objects hh WHERE hh.site = o.site AND hh.source = o.source
	    AND hh.kind = 'host' AND hh.deleted_at IS NULL AND hh.props->>'cluster_id' = o.moref)
	ELSE 0 END`

func scanObject(row pgx.Row, counts bool) (Object, error) {
	var (
		o                          Object
		hostID, hostName, cl, clNm string
	)
	dest := []any{&o.Site, &o.Source, &o.Kind, &o.Moref, &o.Name, &o.ParentMoref, &o.Path, &o.Props,
		&o.FirstSeen, &o.ObservedAt, &o.UpdatedAt, &o.Datacenter, &hostID, &hostName, &cl, &clNm}
	if counts {
		dest = append(dest, &o.VMs, &o.Hosts)
	}
	if err := row.Scan(dest...); err != nil {
		return Object{}, err
	}
	if o.Props == nil {
		o.Props = map[string]any{}
	}
	if hostID != "" {
		o.Host = &ObjectRef{Moref: hostID, Name: hostName}
	}
	if cl != "" {
		o.Cluster = &ObjectRef{Moref: cl, Name: clNm}
	}
	return o, nil
}

func pageBounds(page, size int) (limit, offset int) {
	if size < 1 {
		size = 50
	}
	if page < 1 {
		page = 1
	}
	return size, (page - 1) * size
}

// listObjects runs a page query: the total matching where, and the page.
func (s *Store) listObjects(ctx context.Context, kind, where string, a args, keys []SortKey, page, size int, counts bool) ([]Object, int, error) {
	order, err := orderBy(kind, keys)
	if err != nil {
		return nil, 0, err
	}
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM inventory_objects o WHERE `+where, a...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: count %s: %w", kind, err)
	}
	limit, offset := pageBounds(page, size)
	cols := objectCols
	if counts {
		cols += countCols
	}
	lp, op := a.add(limit), a.add(offset)
	q := `SELECT ` + cols + ` FROM (SELECT * FROM inventory_objects o WHERE ` + where + ` ORDER BY ` + order +
		` LIMIT ` + lp + ` OFFSET ` + op + `) o` + objectJoins + ` ORDER BY ` + order
	rows, err := s.pool.Query(ctx, q, a...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: list %s: %w", kind, err)
	}
	defer rows.Close()
	out := []Object{}
	for rows.Next() {
		o, err := scanObject(rows, counts)
		if err != nil {
			return nil, 0, fmt.Errorf("store: list %s: %w", kind, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: list %s: %w", kind, err)
	}
	return out, total, nil
}

// VMs returns a page of the live VMs in the caller's data scope matching q,
// and how many match in all.
func (s *Store) VMs(ctx context.Context, q VMQuery) ([]Object, int, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	var a args
	where := vmWhere(sc, &q.VMFilter, &a)
	return s.listObjects(ctx, KindVM, where, a, q.Sort, q.Page, q.PageSize, false)
}

// Objects returns a page of the live hosts, clusters or datastores in the
// caller's data scope, with their VM (and for clusters host) counts.
func (s *Store) Objects(ctx context.Context, q ObjectQuery) ([]Object, int, error) {
	if _, ok := sortSQL[q.Kind]; !ok || q.Kind == KindVM {
		return nil, 0, fmt.Errorf("store: objects: unsupported kind %q", q.Kind)
	}
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	var a args
	w := []string{"o.kind = " + a.add(q.Kind), "o.deleted_at IS NULL", sc.siteSQL("o.site", &a)}
	if q.Site != "" {
		w = append(w, "o.site = "+a.add(q.Site))
	}
	if q.Q != "" {
		w = append(w, "o.name ILIKE "+a.add(likePattern(q.Q)))
	}
	return s.listObjects(ctx, q.Kind, strings.Join(w, " AND "), a, q.Sort, q.Page, q.PageSize, true)
}

// Object returns one live object of a kind by source and moref, with its
// counts, or ErrNotFound (also when it is outside the caller's data scope).
func (s *Store) Object(ctx context.Context, kind, source, moref string) (Object, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return Object{}, err
	}
	a := args{source, kind, moref}
	var in string
	if kind == KindVM {
		in = sc.vmSQL("o", &a)
	} else {
		in = sc.siteSQL("o.site", &a)
	}
	// The source's site first: the primary key starts with it.
	o, err := scanObject(s.pool.QueryRow(ctx, `SELECT `+objectCols+countCols+`
		FROM inventory_objects o `+objectJoins+`
		WHERE o.site = (SELECT site FROM sources WHERE source = $1) AND o.source = $1 AND o.kind = $2 AND o.moref = $3
		AND o.deleted_at IS NULL AND `+in, a...), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return Object{}, ErrNotFound
	}
	if err != nil {
		return Object{}, fmt.Errorf("store: %s %s/%s: %w", kind, source, moref, err)
	}
	return o, nil
}

// LatestWindow is how far back VM returns latest metric values.
const LatestWindow = time.Hour

// VM returns one live VM by source and moref, or ErrNotFound: the object,
// its resource pool and datastores resolved to names, and the newest value
// of each of its counters (per instance) within LatestWindow.
func (s *Store) VM(ctx context.Context, source, moref string) (VMDetail, error) {
	o, err := s.Object(ctx, KindVM, source, moref)
	if err != nil {
		return VMDetail{}, err
	}
	d := VMDetail{Object: o, Datastores: []ObjectRef{}, Latest: []LatestValue{}}
	var dsIDs []string
	if list, ok := o.Props["datastore_ids"].([]any); ok {
		for _, v := range list {
			if id, ok := v.(string); ok {
				dsIDs = append(dsIDs, id)
			}
		}
	}
	rp, _ := o.Props["resource_pool_id"].(string)
	names := map[string]string{}
	if len(dsIDs) > 0 || rp != "" {
		rows, err := s.pool.Query(ctx, `SELECT kind, moref, name FROM inventory_objects
			WHERE site = $1 AND source = $2 AND ((kind = 'datastore' AND moref = ANY($3)) OR (kind IN ('resourcepool', 'vapp') AND moref = $4))`,
			o.Site, o.Source, dsIDs, rp)
		if err != nil {
			return VMDetail{}, fmt.Errorf("store: vm %s/%s: placement: %w", source, moref, err)
		}
		for rows.Next() {
			var kind, ref, name string
			if err := rows.Scan(&kind, &ref, &name); err != nil {
				rows.Close()
				return VMDetail{}, fmt.Errorf("store: vm %s/%s: placement: %w", source, moref, err)
			}
			if kind == KindDatastore {
				names["ds/"+ref] = name
			} else {
				names["rp/"+ref] = name
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return VMDetail{}, fmt.Errorf("store: vm %s/%s: placement: %w", source, moref, err)
		}
	}
	for _, id := range dsIDs {
		d.Datastores = append(d.Datastores, ObjectRef{Moref: id, Name: names["ds/"+id]})
	}
	if rp != "" {
		d.ResourcePool = &ObjectRef{Moref: rp, Name: names["rp/"+rp]}
	}
	d.Latest, err = s.LatestValues(ctx, o.Site, source, KindVM, moref, LatestWindow)
	if err != nil {
		return VMDetail{}, err
	}
	d.UserFields, d.Groups, err = s.vmExtras(ctx, &o)
	if err != nil {
		return VMDetail{}, err
	}
	return d, nil
}

// LatestValues returns the newest finite value of each counter (and
// instance) of an entity within window before now, by instance and counter.
// An entity of a site outside the caller's data scope has none.
func (s *Store) LatestValues(ctx context.Context, site, source, kind, entity string, window time.Duration) ([]LatestValue, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	if ok, err := s.entityVisible(ctx, sc, site, source, kind, entity); err != nil || !ok {
		return []LatestValue{}, err
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (instance, counter) instance, counter, unit, value::float8, ts
		FROM samples_named
		WHERE site = $1 AND source = $2 AND entity_kind = $3 AND entity_id = $4
		AND ts > now() - make_interval(secs => $5) AND abs(value) < 'Infinity'::real
		ORDER BY instance, counter, ts DESC`, site, source, kind, entity, window.Seconds())
	if err != nil {
		return nil, fmt.Errorf("store: latest values of %s %s/%s: %w", kind, source, entity, err)
	}
	defer rows.Close()
	out := []LatestValue{}
	for rows.Next() {
		var v LatestValue
		if err := rows.Scan(&v.Instance, &v.Counter, &v.Unit, &v.Value, &v.TS); err != nil {
			return nil, fmt.Errorf("store: latest values of %s %s/%s: %w", kind, source, entity, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: latest values of %s %s/%s: %w", kind, source, entity, err)
	}
	return out, nil
}

// ClusterCount is the number of VMs of one cluster.
type ClusterCount struct {
	Site, Source, Moref, Name string
	VMs                       int64
}

// VMStats are VM counts. Keys of the maps are the property values; VMs
// without the property count under "unknown".
type VMStats struct {
	Total         int64
	ByPowerState  map[string]int64
	ByToolsStatus map[string]int64
	BySite        map[string]int64
	// ByCluster are the TopClusters clusters with the most VMs, most first;
	// VMs outside any cluster are not counted here.
	ByCluster []ClusterCount
}

// TopClusters is how many clusters VMStats counts.
const TopClusters = 50

// VMStats counts the live VMs in the caller's data scope matching f by power state, tools status, site
// and cluster.
func (s *Store) VMStats(ctx context.Context, f VMFilter) (VMStats, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return VMStats{}, err
	}
	var a args
	where := vmWhere(sc, &f, &a)
	rows, err := s.pool.Query(ctx, `WITH f AS MATERIALIZED (
		    SELECT o.site, o.source, coalesce(nullif(o.props->>'power_state', ''), 'unknown') AS ps,
		        coalesce(nullif(o.props->>'tools_running_status', ''), 'unknown') AS ts,
		        nullif(o.props->>'cluster_id', '') AS cl
		    FROM inventory_objects o WHERE `+where+`)
		SELECT 'power', ps, '', '', '', count(*) FROM f GROUP BY ps
		UNION ALL SELECT 'tools', ts, '', '', '', count(*) FROM f GROUP BY ts
		UNION ALL SELECT 'site', site, '', '', '', count(*) FROM f GROUP BY site
		UNION ALL SELECT 'cluster', x.site, x.source, x.cl, coalesce(c.name, ''), x.n FROM (
		    SELECT site, source, cl, count(*) AS n FROM f WHERE cl IS NOT NULL
		    GROUP BY site, source, cl ORDER BY n DESC, site, source, cl LIMIT `+strconv.Itoa(TopClusters)+`) x
		LEFT JOIN inventory_objects c ON c.site = x.site AND c.source = x.source AND c.kind = 'cluster' AND c.moref = x.cl`, a...)
	if err != nil {
		return VMStats{}, fmt.Errorf("store: vm stats: %w", err)
	}
	defer rows.Close()
	st := VMStats{ByPowerState: map[string]int64{}, ByToolsStatus: map[string]int64{}, BySite: map[string]int64{}, ByCluster: []ClusterCount{}}
	for rows.Next() {
		var dim, k1, k2, k3, name string
		var n int64
		if err := rows.Scan(&dim, &k1, &k2, &k3, &name, &n); err != nil {
			return VMStats{}, fmt.Errorf("store: vm stats: %w", err)
		}
		switch dim {
		case "power":
			st.ByPowerState[k1] = n
			st.Total += n
		case "tools":
			st.ByToolsStatus[k1] = n
		case "site":
			st.BySite[k1] = n
		case "cluster":
			st.ByCluster = append(st.ByCluster, ClusterCount{Site: k1, Source: k2, Moref: k3, Name: name, VMs: n})
		}
	}
	if err := rows.Err(); err != nil {
		return VMStats{}, fmt.Errorf("store: vm stats: %w", err)
	}
	// UNION ALL keeps no order across branches: restore the cluster order.
	slices.SortFunc(st.ByCluster, func(a, b ClusterCount) int {
		return cmp.Or(cmp.Compare(b.VMs, a.VMs), cmp.Compare(a.Site, b.Site), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Moref, b.Moref))
	})
	return st, nil
}

// SiteInfo is a site with its counts.
type SiteInfo struct {
	Name, Description string
	CreatedAt         time.Time
	VMs, Hosts        int64 // live inventory objects
	Sources           []string
	Agents            int64 // registered, not revoked
	AgentsConnected   int64 // of those, connected to some aggregator
}

// SiteQuery is a page of sites.
type SiteQuery struct {
	Q              string // substring of the name or description, any case
	Sort           []SortKey
	Page, PageSize int
}

var siteSortSQL = map[string]string{"name": "s.name", "created_at": "s.created_at", "vms": "vms", "hosts": "hosts"}

// SiteSortFields lists the sort fields of Sites.
func SiteSortFields() []string {
	out := make([]string, 0, len(siteSortSQL))
	for k := range siteSortSQL {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

const siteCols = `s.name, s.description, s.created_at,
	(SELECT count(*) FROM inventory_objects v WHERE v.kind = 'vm' AND v.site = s.name AND v.deleted_at IS NULL) AS vms,
	(SELECT count(*) FROM inventory_objects v WHERE v.kind = 'host' AND v.site = s.name AND v.deleted_at IS NULL) AS hosts,
	ARRAY(SELECT source FROM sources x WHERE x.site = s.name ORDER BY source),
	(SELECT count(*) FROM agents g WHERE g.site = s.name AND g.revoked_at IS NULL),
	(SELECT count(*) FROM agents g WHERE g.site = s.name AND g.revoked_at IS NULL AND agent_is_live(g.connected, g.lease_until))`

func scanSite(row pgx.Row) (SiteInfo, error) {
	var si SiteInfo
	err := row.Scan(&si.Name, &si.Description, &si.CreatedAt, &si.VMs, &si.Hosts, &si.Sources, &si.Agents, &si.AgentsConnected)
	if si.Sources == nil {
		si.Sources = []string{}
	}
	return si, err
}

// Sites returns a page of the sites in the caller's data scope with their
// counts, and how many match.
func (s *Store) Sites(ctx context.Context, q SiteQuery) ([]SiteInfo, int, error) {
	if len(q.Sort) == 0 {
		q.Sort = []SortKey{{Field: "name"}}
	}
	var order []string
	for _, k := range q.Sort {
		expr, ok := siteSortSQL[k.Field]
		if !ok {
			return nil, 0, fmt.Errorf("store: unknown sort field %q for sites", k.Field)
		}
		if k.Desc {
			expr += " DESC"
		}
		order = append(order, expr)
	}
	order = append(order, "s.name")
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	var a args
	where := sc.siteSQL("s.name", &a)
	if q.Q != "" {
		p := a.add(likePattern(q.Q))
		where += " AND (s.name ILIKE " + p + " OR s.description ILIKE " + p + ")"
	}
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM sites s WHERE `+where, a...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: count sites: %w", err)
	}
	limit, offset := pageBounds(q.Page, q.PageSize)
	lp, op := a.add(limit), a.add(offset)
	rows, err := s.pool.Query(ctx, `SELECT `+siteCols+` FROM sites s WHERE `+where+` ORDER BY `+strings.Join(order, ", ")+
		` LIMIT `+lp+` OFFSET `+op, a...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: sites: %w", err)
	}
	defer rows.Close()
	out := []SiteInfo{}
	for rows.Next() {
		si, err := scanSite(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: sites: %w", err)
		}
		out = append(out, si)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: sites: %w", err)
	}
	return out, total, nil
}

// Site returns one site with its counts, or ErrNotFound (also when it is
// outside the caller's data scope).
func (s *Store) Site(ctx context.Context, name string) (SiteInfo, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return SiteInfo{}, err
	}
	if !sc.allowsSite(name) {
		return SiteInfo{}, ErrNotFound
	}
	si, err := scanSite(s.pool.QueryRow(ctx, `SELECT `+siteCols+` FROM sites s WHERE s.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return SiteInfo{}, ErrNotFound
	}
	if err != nil {
		return SiteInfo{}, fmt.Errorf("store: site %s: %w", name, err)
	}
	return si, nil
}
