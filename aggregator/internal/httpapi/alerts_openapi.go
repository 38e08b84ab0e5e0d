package httpapi

// alertSchemas are the OpenAPI schemas of the alert routes.
func alertSchemas() map[string]any {
	number := map[string]any{"type": "number"}
	strMap := map[string]any{"type": "object", "additionalProperties": str}
	duration := desc(str, "a duration: 30s, 5m, 1h30m; 0 or empty for none")
	condition := objectSchema(map[string]any{
		"metric": desc(str, "counter of the entity as a whole (cpu.usage.average), or a state metric of the default pack "+
			"(agent.connected.count, agent.spool.dropping, agent.spool.backlog_minutes, host.connected.state, host.maintenance.state, "+
			"datastore.free.pct, datastore.full.days, datastore.accessible.state, vm.connected.state, vm.tools.running, vm.tools.outdated, "+
			"vm.snapshot.age_hours, vm.snapshot.count), or vcenter.alarm.status (>= 2 or >= 3, the single condition: mirrors vCenter's alarms)"),
		"agg":             desc(str, "avg, min, max over window, or last (the default)"),
		"window":          duration,
		"op":              desc(str, "> >= < <= == !="),
		"threshold":       desc(number, "percent metrics in percent (they are stored in hundredths)"),
		"clear_threshold": nullable(number, "hysteresis: a firing instance resolves only once the value crosses this back (≤ threshold for > and >=, ≥ for < and <=)"),
	}, "metric", "op", "threshold")
	scope := objectSchema(map[string]any{
		"sites": strList, "vm_groups": desc(strList, "VM group ids (VM rules)"),
		"clusters": desc(strList, "cluster ids (source:moref): the cluster, its hosts and their VMs"),
		"hosts":    desc(strList, "host ids (source:moref): the host and its VMs"),
		"tags":     desc(strList, "vSphere tags (category/name)"), "entities": desc(strList, "explicit entity ids (source:moref; site names for site rules; vCenter sources for vcenter rules)"),
	})
	ruleProps := map[string]any{
		"name": str, "description": str, "entity_kind": desc(str, "vm, host, cluster, datastore, site or vcenter (a vCenter/ESXi endpoint, by its source, watched through the agents' heartbeats)"),
		"severity": desc(str, "critical, warning or info"), "enabled": desc(boolean, "default true"),
		"match": desc(str, "all (AND, the default) or any (OR) of the conditions"), "conditions": arrayOf(ref("AlertCondition")),
		"for":             desc(duration, "the conditions must hold this long, in sample time, before the alert fires"),
		"keep_firing_for": desc(duration, "a firing alert resolves only after its conditions stopped holding for this long"),
		"scope":           desc(ref("AlertScope"), "every non-empty list must match; all empty: every entity of the kind"),
		"labels":          strMap,
		"annotations": desc(strMap, "templates: {{entity}}, {{entity_id}}, {{site}}, {{rule}}, {{value}}, {{threshold}}, {{unit}}, {{severity}}, "+
			"{{labels.NAME}}; summary and description are shown by notifiers"),
		"channels":        desc(strList, "notification channel ids"),
		"repeat_interval": desc(duration, "re-send a firing, unacknowledged alert this often (at least 1m); 0: never"),
		"group_by": desc(strList, "group the rule's notifications per channel: [site] or [site, cluster]; the alerts of a group due together "+
			"go out as one message. Empty: one message per alert"),
		"group_wait": desc(duration, "with group_by: hold firing notifications this long (at most 10m) so one cause's alerts arrive together; "+
			"resolved notices are never held"),
	}
	rule := map[string]any{"id": uuidStr, "builtin": desc(str, "the default-pack entry this rule came from; empty for operators' rules"),
		"revision": integer, "created_at": dateTime, "updated_at": dateTime, "created_by": str, "updated_by": str}
	for k, v := range ruleProps {
		rule[k] = v
	}
	alertProps := map[string]any{
		"id": integer, "rule_id": nullable(uuidStr, "null once the rule is deleted"), "rule_name": str, "severity": str,
		"state": desc(str, "firing, unknown (no data or site offline: never resolved for that), suppressed (its parent was down, or a "+
			"maintenance window covered it: recorded, not paged) or resolved"),
		"suppressed_by":     nullable(integer, "the alert of the parent (vCenter, host, datastore) whose state suppressed this one; null when it has none, or when the caller sees the alert only through a VM group"),
		"suppressed_reason": desc(str, "why it is suppressed, in words; for a caller who sees the alert only through a VM group, without the parent's or the window's name"),
		"alarm":             nullable(str, "the vCenter alarm a mirrored alert stands for"),
		"site":              str, "entity_kind": str, "entity_id": desc(str, "source:moref; a site's name; a vCenter's source"), "entity_name": str,
		"pending_since": nullable(dateTime, "event time the conditions began to hold (with for)"),
		"starts_at":     desc(dateTime, "event time it fired"), "ends_at": nullable(dateTime, "event time it resolved"),
		"value": nullable(number, "the last value evaluated"), "threshold": nullable(number, ""), "unit": str, "summary": str,
		"labels": strMap, "annotations": strMap,
		"late":     desc(boolean, "it fired from data older than the lateness (a site's backlog): announced in a digest, not paged"),
		"silenced": desc(boolean, "a silence matched when it fired: recorded, not notified"),
		"acked":    boolean, "acked_at": nullable(dateTime, ""), "acked_by": str, "ack_comment": str,
		"resolved_by":      desc(str, "who resolved it by hand, or system (rule disabled or deleted); empty when its data resolved it"),
		"last_notified_at": nullable(dateTime, ""), "created_at": desc(dateTime, "when the aggregator learnt of it"), "updated_at": dateTime,
	}
	attempt := objectSchema(map[string]any{"attempt": integer, "epoch": desc(integer, "the dispatcher lease's fencing epoch"),
		"started_at": dateTime, "finished_at": dateTime, "outcome": desc(str, "delivered, retry, permanent or error"),
		"code": desc(str, "the provider's code (an HTTP status, a chat errcode, an SMTP reply)"), "message": str, "error": str,
		"fenced": desc(boolean, "the outcome came after the lease had moved on and was not recorded on the notification")})
	notification := objectSchema(map[string]any{"id": integer, "idempotency_key": str, "channel_id": uuidStr, "channel_name": str,
		"kind": desc(str, "firing, resolved, repeat, digest or test"), "state": desc(str, "pending, sending, delivered, failed, or merged (into a storm digest or a group message: merged_into)"),
		"merged_into": nullable(integer, "the digest or group message that carried it (its delivered_at is that message's)"),
		"attempts":    arrayOf(attempt), "created_at": dateTime, "next_attempt_at": nullable(dateTime, "while pending"),
		"delivered_at": nullable(dateTime, ""), "last_code": str, "last_error": str})
	event := objectSchema(map[string]any{"id": integer,
		"kind": desc(str, "pending, firing, keeping, kept, unknown, known, resolved, silenced, ack, manual_resolve, closed, notified, notify_failed"),
		"at":   desc(dateTime, "event time"), "recorded_at": desc(dateTime, "arrival time"), "late": boolean, "actor": str,
		"value": nullable(number, ""), "detail": map[string]any{"type": "object"}})
	detail := map[string]any{"timeline": arrayOf(event), "notifications": arrayOf(notification)}
	for k, v := range alertProps {
		detail[k] = v
	}
	counts := map[string]any{"type": "object", "additionalProperties": integer}
	matcher := objectSchema(map[string]any{"name": desc(str, "a label: alertname, severity, site, entity_kind, entity_id, entity, rule_id, or a rule's own"),
		"op": desc(str, "= != =~ !~ (regular expressions match the whole value)"), "value": str}, "name", "op", "value")
	return map[string]any{
		"AlertCondition":   condition,
		"AlertScope":       scope,
		"AlertRuleInput":   objectSchema(ruleProps, "name", "entity_kind", "severity", "conditions"),
		"AlertRule":        objectSchema(rule),
		"AlertRulePreview": objectSchema(map[string]any{"rule": ref("AlertRuleInput"), "from": desc(dateTime, "default to - 6h"), "to": desc(dateTime, "default now")}, "rule"),
		"AlertPreview": objectSchema(map[string]any{"from": dateTime, "to": dateTime, "entities_evaluated": integer, "samples": integer,
			"fired": integer, "truncated": boolean, "items": arrayOf(objectSchema(map[string]any{"site": str, "entity_id": str, "entity_name": str,
				"firings": arrayOf(objectSchema(map[string]any{"pending_since": nullable(dateTime, ""), "starts_at": dateTime,
					"ends_at": nullable(dateTime, "null: still firing at the end of the range"), "value": number}))}))}),
		"Alert":        objectSchema(alertProps),
		"AlertDetail":  objectSchema(detail),
		"AlertComment": objectSchema(map[string]any{"comment": desc(str, "optional; the body itself is optional")}),
		"AlertStats": objectSchema(map[string]any{"active": counts, "by_severity": counts, "by_site": counts,
			"by_rule": arrayOf(objectSchema(map[string]any{"rule_id": uuidStr, "rule_name": str, "count": integer})),
			"acked":   integer, "silenced": integer, "from": dateTime, "to": dateTime, "fired": integer, "resolved": integer,
			"transitions": desc(counts, "timeline entries recorded in the period, by kind"), "late": integer,
			"notifications": desc(counts, "notifications queued in the period, by state"), "mean_time_to_resolve_s": number}),
		"AlertMatcher": matcher,
		"SilenceInput": objectSchema(map[string]any{"matchers": arrayOf(ref("AlertMatcher")), "starts_at": desc(dateTime, "default now"),
			"ends_at": dateTime, "comment": str}, "matchers", "ends_at"),
		"Silence": objectSchema(map[string]any{"id": uuidStr, "matchers": arrayOf(ref("AlertMatcher")), "starts_at": dateTime, "ends_at": dateTime,
			"comment": str, "created_by": str, "created_at": dateTime, "expired_at": nullable(dateTime, "set when ended early"),
			"state": desc(str, "active, pending or expired")}),
		"NotificationChannelInput": objectSchema(map[string]any{"name": str, "type": desc(str, "the notifier plugin: webhook, email, dingtalk, wecom, ..."),
			"config":  map[string]any{"type": "object", "description": "the plugin's config (shown back)"},
			"secrets": map[string]any{"type": "object", "description": "write-only values merged into config when sending (never returned, never audited)"},
			"locale":  desc(str, "en (default), zh-CN or ja-JP"), "enabled": desc(boolean, "default true"),
			"rate_per_minute": nullable(integer, "at most this many notifications in any 60 s (0: no limit; null: the type's default — dingtalk and wecom 20, feishu 100); "+
				"a storm beyond it is merged into one digest"),
			"rate_per_second": nullable(integer, "at most this many in any second (0: no limit; null: the type's default — feishu 5)")}, "name", "type"),
		"NotificationChannel": objectSchema(map[string]any{"id": uuidStr, "name": str, "type": str, "config": map[string]any{"type": "object"},
			"secret_keys": desc(strList, "names of the secrets set (their values are never returned)"), "locale": str, "enabled": boolean,
			"rate_per_minute": nullable(integer, "null: the type's default"), "rate_per_second": nullable(integer, "null: the type's default"),
			"created_at": dateTime, "updated_at": dateTime, "created_by": str}),
		"MaintenanceWindowInput": objectSchema(map[string]any{"name": str, "matchers": arrayOf(ref("AlertMatcher")),
			"starts_at": dateTime, "duration": desc(str, "how long it (each occurrence) lasts: 2h, 30m (at most 744h)"),
			"every":   desc(str, "recurring: an occurrence every this long from starts_at (at least 1h and duration); empty: once"),
			"ends_at": nullable(dateTime, "no occurrence starts after this; null: forever"), "comment": str}, "name", "matchers", "starts_at", "duration"),
		"MaintenanceWindow": objectSchema(map[string]any{"id": uuidStr, "name": str, "matchers": arrayOf(ref("AlertMatcher")), "starts_at": dateTime,
			"duration": str, "every": str, "ends_at": nullable(dateTime, "null: forever"), "comment": str, "created_by": str,
			"created_at": dateTime, "updated_at": dateTime, "active": desc(boolean, "the window covers now")}),
		"ChannelTestResult": objectSchema(map[string]any{"idempotency_key": str, "outcome": desc(str, "delivered, retry, permanent or error"),
			"code": str, "message": str, "error": str, "duration_ms": integer}),
	}
}
