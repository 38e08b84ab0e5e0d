package alert

import (
	"fmt"
	"slices"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// vCenter reachability and the spool's fill, from the agents' heartbeats.
//
// Each agent reports, in every heartbeat, whether it can reach each
// vCenter/ESXi endpoint it polls (protocol.VCenterStatus, stored in
// agents.vcenters) and its spool's quota (agents.spool_max_bytes). The
// engine reads them with the registry at each tick:
//
//   - vcenter rules (entity kind vcenter, one instance per endpoint, its
//     id the endpoint's source) watch MetricVCenterReachable, observed at
//     the wall clock for the sites that have an agent connected (a dark
//     site's report is stale: its site-offline alert stands for it);
//   - while an endpoint is reported unreachable, the alerts of its hosts,
//     VMs, clusters and datastores that fire at an event time from the
//     report's since on are suppressed, naming the vCenter (and its
//     alert): the order of causes is site offline (instances unknown) >
//     vCenter unreachable > host down > the VM;
//   - site rules also see MetricSpoolUsedPct, the fullest spool of the
//     site's agents against its quota (only when an agent reports one).

// Metrics the heartbeats feed.
const (
	// MetricVCenterReachable is 1 while an agent of the site reaches the
	// vCenter/ESXi endpoint, else 0.
	MetricVCenterReachable = "vcenter.reachable.state"
	// MetricSpoolUsedPct is the fullest spool of the site's agents, in
	// percent of its quota (spool_bytes / spool_max_bytes).
	MetricSpoolUsedPct = "agent.spool.used_pct"
)

// vcenterStatuses merges the endpoint reports of a site's agents: an
// endpoint is reachable when any agent reaching it says so; unreachable
// since the latest since of the agents that cannot (the oldest would name
// a time another agent still reached it).
func vcenterStatuses(reports [][]protocol.VCenterStatus) map[string]protocol.VCenterStatus {
	out := map[string]protocol.VCenterStatus{}
	for _, list := range reports {
		for _, v := range list {
			if v.Source == "" {
				continue
			}
			cur, seen := out[v.Source]
			switch {
			case !seen:
				out[v.Source] = v
			case v.Reachable && !cur.Reachable:
				out[v.Source] = v
			case !v.Reachable && !cur.Reachable && v.Since > cur.Since:
				out[v.Source] = v
			}
		}
	}
	return out
}

// spoolUsedPct is the fullest spool of agents in percent of its quota,
// and whether any of them reports a quota.
func spoolUsedPct(used, quota []int64) (float64, bool) {
	pct, known := 0.0, false
	for i := range used {
		if i >= len(quota) || quota[i] <= 0 {
			continue
		}
		known = true
		pct = max(pct, float64(used[i])/float64(quota[i])*100)
	}
	return pct, known
}

// evalHeartbeats evaluates the vcenter rules and the site rules on the
// spool's fill, from the registry's report st, at now; it also keeps each
// site's endpoint reachability for suppression.
func (e *Engine) evalHeartbeats(st map[string]SiteStatus, now time.Time) {
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	slices.Sort(names)
	ts := now.UnixMilli()
	for _, name := range names {
		s := st[name]
		ss := e.site(name)
		ss.vcenters = s.VCenters
		if !s.Connected {
			continue
		}
		wm := ss.watermark
		if e.kinds[KindVCenter] != nil {
			sources := make([]string, 0, len(s.VCenters))
			for src := range s.VCenters {
				sources = append(sources, src)
			}
			slices.Sort(sources)
			for _, src := range sources {
				sd := protocol.SeriesData{Key: protocol.SeriesKey{Source: src, EntityKind: KindVCenter, EntityID: src,
					Counters: []protocol.Counter{{Name: MetricVCenterReachable}}},
					Timestamps: []int64{ts}, Values: [][]float64{{b2f(s.VCenters[src].Reachable)}}}
				e.evalSeries(name, ss, &sd, now)
			}
		}
		if e.kinds[KindSite] != nil && s.SpoolQuota {
			sd := protocol.SeriesData{Key: protocol.SeriesKey{EntityKind: KindSite, EntityID: name,
				Counters: []protocol.Counter{{Name: MetricSpoolUsedPct}}},
				Timestamps: []int64{ts}, Values: [][]float64{{s.SpoolUsedPct}}}
			e.evalSeries(name, ss, &sd, now)
		}
		ss.watermark = wm // observations, not data
	}
}

// vcenterDown is the suppression cause of an entity of vCenter (site,
// source) at event time at: the endpoint is reported unreachable, since
// a time at or before at.
func (e *Engine) vcenterDown(site, source string, at int64) *cause {
	ss := e.siteInfo[site]
	if ss == nil {
		return nil
	}
	v, ok := ss.vcenters[source]
	if !ok || v.Reachable || at < v.Since {
		return nil
	}
	return &cause{reason: fmt.Sprintf("vCenter %s is unreachable", source),
		parent: entityKey{site: site, source: source, kind: KindVCenter, id: source}, metric: MetricVCenterReachable}
}
