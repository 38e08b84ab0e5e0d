// Package alert is vmpulse's alert engine: rules over the samples of one
// entity kind, their evaluation in event time, the persisted state of each
// (rule, entity), alerts with their timelines, silences, notification
// channels, and the transactional outbox drained by one lease-holding
// dispatcher.
//
// # Rules
//
// A Rule applies to one entity kind (vm, host, cluster, datastore, site) and
// yields one instance per entity in its Scope. Its condition set (all or
// any of its Conditions) compares an aggregation (avg, min, max, last) of a
// metric over a window with a threshold; `for` delays firing,
// `keep_firing_for` delays resolving, and a condition's clear threshold
// (hysteresis) is the one that must be crossed back to resolve. Percent
// counters arrive in hundredths (unit "%"); rules speak percent.
//
// # Evaluation in event time
//
// The engine consumes samples after their batch COMMITs: Engine.Consume
// reads the realtime hub's feed (the batches this replica ingested) into
// Engine.Offer's queue; Engine.Process is the synchronous form tests use.
// Single-condition rules on an ordering operator are indexed by threshold,
// so a sample costs only the rules its value crosses and the entity's
// active instances. Each
// entity's samples are evaluated in the order of their own timestamps, and
// every timer (`for`, `keep_firing_for`) runs on those timestamps, never on
// the wall clock: a site's backlog replays its history as it happened. A
// sample older than what its entity already evaluated is out of order and
// skipped (counted). Each site has a watermark, the newest sample time
// evaluated: an entity whose data stops while its site's watermark moves on
// goes unknown after NoDataAfter, and every instance of a site whose agents
// are all disconnected (store.Agent.Connected, a lease) goes unknown too —
// never resolved: only data resolves an alert. A transition whose event
// time is older than Lateness when it is evaluated is late: it is recorded
// at its own time, marked late, and announced in one digest per channel and
// site instead of a page.
//
// # States
//
// ok → pending → firing → (resolved) ok, and unknown from any of them. Each
// transition is written, in one transaction, to alert_states (the instance,
// timers included), alerts and alert_events (the timeline), and the outbox
// (alert_notifications) — so a restarted engine resumes exactly where the
// database says, and a notification exists if and only if its transition
// does.
//
// # Suppression, maintenance and vCenter alarms
//
// An alert that fires while its entity's parent is down — its host not
// responding, disconnected or in maintenance mode, or, for disk rules, a
// datastore it uses inaccessible — is recorded with state suppressed and
// the parent's alert (suppressed_by), never paged; the parent is read from
// the inventory as it was at the alert's event time (inventory_changes),
// so a VM that moved follows its new host. Maintenance windows (label
// matchers over a time range, optionally recurring) suppress the same
// way. A suppressed alert still firing once its cause is gone pages then
// (unsuppressed). See topology.go and maintenance.go. Rules on
// MetricVCenterAlarm mirror vCenter's triggered alarms from the alarm
// events the agents forward (alarms.go).
//
// # Delivery
//
// The Dispatcher drains the outbox. Among all replicas one holds the lease
// (a session advisory lock); taking it bumps a fencing epoch that stamps
// each claimed row, and an outcome is recorded only while the epoch is
// still current. Retries back off exponentially and honour the provider's
// retry-after; every attempt is recorded. The only duplicate possible is
// one resend of a notification whose dispatcher died between the
// provider's answer and the commit; each notification carries an
// idempotency key for providers that deduplicate.
//
// A channel may be rate-limited (Channel.Rates; the chat robots' limits
// by default): beyond its budget the outbox merges the channel's due
// notifications into one digest, so a storm never exceeds the limit and
// nothing is dropped (ratelimit.go).
//
// The engine and the dispatcher know nothing of how a notification is
// sent: they call a Notifier (see PluginNotifier for the plugin host).
package alert
