package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/vmpulse/vmpulse/protocol"
)

// seriesCache maps a series' natural key to its id. Series are never
// deleted while the aggregator runs, so entries never go stale.
type seriesCache struct {
	mu  sync.RWMutex
	ids map[string]int64
}

func newSeriesCache() *seriesCache { return &seriesCache{ids: make(map[string]int64)} }

// seriesKey builds the cache key. The unit separator cannot appear in any
// part: resolveSeries rejects control characters in names.
func seriesKey(b *strings.Builder, site string, k *protocol.SeriesKey) string {
	b.Reset()
	b.WriteString(site)
	for _, p := range [...]string{k.Source, k.EntityKind, k.EntityID, k.Instance} {
		b.WriteByte(0x1f)
		b.WriteString(p)
	}
	for _, c := range k.Counters {
		b.WriteByte(0x1e)
		b.WriteString(c.Name)
	}
	return b.String()
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// resolveSeries returns the id of each series of the payload, creating the
// unknown ones. Creation commits on its own: a series row without samples is
// harmless, and it keeps the batch transaction short.
func (s *Store) resolveSeries(ctx context.Context, site string, series []protocol.SeriesData) ([]int64, error) {
	ids := make([]int64, len(series))
	keys := make([]string, len(series))
	var b strings.Builder
	var missing []int
	s.series.mu.RLock()
	for i := range series {
		keys[i] = seriesKey(&b, site, &series[i].Key)
		if id, ok := s.series.ids[keys[i]]; ok {
			ids[i] = id
		} else {
			missing = append(missing, i)
		}
	}
	s.series.mu.RUnlock()
	if len(missing) == 0 {
		return ids, nil
	}

	// Deduplicate and sort the missing keys so concurrent upserts lock rows
	// in the same order.
	uniq := make(map[string]int, len(missing))
	for _, i := range missing {
		if _, ok := uniq[keys[i]]; !ok {
			uniq[keys[i]] = i
		}
	}
	order := make([]string, 0, len(uniq))
	for k := range uniq {
		order = append(order, k)
	}
	sort.Strings(order)
	n := len(order)
	sources, kinds, eids, insts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	counters, units := make([]string, n), make([]string, n)
	for j, k := range order {
		key := &series[uniq[k]].Key
		for _, str := range []string{key.Source, key.EntityKind, key.EntityID, key.Instance} {
			if hasControl(str) {
				return nil, reject(protocol.ErrCodeMalformed, "series %q/%q: control character in key", key.EntityKind, key.EntityID)
			}
		}
		cn := make([]string, len(key.Counters))
		un := make([]string, len(key.Counters))
		for c, ctr := range key.Counters {
			if ctr.Name == "" || hasControl(ctr.Name) || hasControl(ctr.Unit) {
				return nil, reject(protocol.ErrCodeMalformed, "series %s/%s: counter %d: empty name or control character", key.EntityKind, key.EntityID, c)
			}
			cn[c], un[c] = ctr.Name, ctr.Unit
		}
		sources[j], kinds[j], eids[j], insts[j] = key.Source, key.EntityKind, key.EntityID, key.Instance
		counters[j] = strings.Join(cn, "\x1e")
		units[j] = strings.Join(un, "\x1e")
	}
	rows, err := s.pool.Query(ctx, `
		INSERT INTO series (site, source, entity_kind, entity_id, instance, counters, units)
		SELECT $1, t.source, t.kind, t.eid, t.inst,
		       string_to_array(t.counters, E'\x1e'), string_to_array(t.units, E'\x1e')
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
		     AS t(source, kind, eid, inst, counters, units)
		ON CONFLICT (site, source, entity_kind, entity_id, instance, counters)
		DO UPDATE SET units = EXCLUDED.units
		RETURNING id, source, entity_kind, entity_id, instance, array_to_string(counters, E'\x1e')`,
		site, sources, kinds, eids, insts, counters, units)
	if err != nil {
		return nil, fmt.Errorf("store: upsert series: %w", err)
	}
	defer rows.Close()
	s.series.mu.Lock()
	defer s.series.mu.Unlock()
	for rows.Next() {
		var id int64
		var src, kind, eid, inst, ctrs string
		if err := rows.Scan(&id, &src, &kind, &eid, &inst, &ctrs); err != nil {
			return nil, fmt.Errorf("store: upsert series: %w", err)
		}
		b.Reset()
		b.WriteString(site)
		for _, p := range [...]string{src, kind, eid, inst} {
			b.WriteByte(0x1f)
			b.WriteString(p)
		}
		if ctrs != "" {
			b.WriteByte(0x1e)
			b.WriteString(ctrs)
		}
		s.series.ids[b.String()] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: upsert series: %w", err)
	}
	for _, i := range missing {
		id, ok := s.series.ids[keys[i]]
		if !ok {
			return nil, fmt.Errorf("store: series %s/%s was not returned by the upsert", series[i].Key.EntityKind, series[i].Key.EntityID)
		}
		ids[i] = id
	}
	return ids, nil
}
