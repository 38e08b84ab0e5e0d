package httpapi

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// AgentRegistry is what the /agents routes need from the rest of the
// aggregator: the agent registry in the database, the ingest server's live
// connections, and the CA that enrollment tokens pin. It is declared here,
// by its consumer, so that this package depends on neither the ingest
// server nor the PKI; main wires an implementation (aggregator.New).
// Implementations must be safe for concurrent use.
type AgentRegistry interface {
	// Agents lists every registered agent, revoked ones included.
	// Registries are small (an agent per site), so the routes filter, sort
	// and page the list in memory.
	Agents(ctx context.Context) ([]store.Agent, error)
	// AgentByID returns one agent, or store.ErrNotFound (also for an id
	// that is not a UUID).
	AgentByID(ctx context.Context, id string) (store.Agent, error)
	// RevokeAgent marks an agent revoked: its certificate is refused from
	// then on. Revoking a revoked agent succeeds and keeps the first
	// revocation time. An unknown agent is store.ErrNotFound.
	RevokeAgent(ctx context.Context, id string) error
	// IssueEnrollToken creates site if it is new and issues a single-use
	// enrollment token for it, valid for ttl. token is the whole text an
	// agent is given (protocol.FormatEnrollToken: the secret and the hash
	// of the CA certificate the agent pins); only a hash of the secret is
	// stored. createdBy is kept beside the token.
	IssueEnrollToken(ctx context.Context, site string, ttl time.Duration, createdBy string) (token string, expires time.Time, err error)
	// Disconnect closes the agent's live connection to this aggregator, if
	// it has one, without waiting. Other aggregator replicas close theirs
	// at the agent's next heartbeat, when they see the revocation.
	Disconnect(agentID string)
}

// Agent states, derived from the registry: revoked wins over connected.
const (
	AgentConnected    = "connected"
	AgentDisconnected = "disconnected"
	AgentRevoked      = "revoked"
)

// Limits of an enrollment token's lifetime.
const (
	DefaultEnrollTTL = 24 * time.Hour
	MinEnrollTTL     = time.Minute
	MaxEnrollTTL     = 720 * time.Hour
)

// Agent is an agent as the API shows it. Times are UTC; a time not known
// yet (never connected, not revoked) is null.
type Agent struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Site            string     `json:"site"`
	Version         string     `json:"version"`
	State           string     `json:"state"`
	Connected       bool       `json:"connected"`
	RemoteAddr      string     `json:"remote_addr"`
	EnrolledAt      time.Time  `json:"enrolled_at"`
	FirstSeen       *time.Time `json:"first_seen"`
	LastSeen        *time.Time `json:"last_seen"`
	SpoolDepth      int64      `json:"spool_depth"`
	SpoolBytes      int64      `json:"spool_bytes"`
	OldestUnsentMS  int64      `json:"oldest_unsent_ms"`
	CollectionLagMS int64      `json:"collection_lag_ms"`
	DroppedBatches  int64      `json:"dropped_batches"`
	CertNotAfter    time.Time  `json:"cert_not_after"`
	RevokedAt       *time.Time `json:"revoked_at"`
	// Plugins are the agent's collector plugins at its last heartbeat.
	Plugins []AgentPlugin `json:"plugins"`
	// SpoolMaxBytes is the spool's quota; null when the agent does not
	// report it (older than the field).
	SpoolMaxBytes *int64 `json:"spool_max_bytes"`
	// VCenters is the reachability of each endpoint the agent polls, at
	// its last heartbeat.
	VCenters []AgentVCenter `json:"vcenters"`
}

// AgentVCenter is one vCenter/ESXi endpoint an agent polls, as its last
// heartbeat reported it. Times are UTC; one not known is null.
type AgentVCenter struct {
	Source    string     `json:"source"`
	Reachable bool       `json:"reachable"`
	Since     *time.Time `json:"since"`
	LastOK    *time.Time `json:"last_ok"`
	LastError string     `json:"last_error"`
}

func agentVCenters(vs []protocol.VCenterStatus) []AgentVCenter {
	out := make([]AgentVCenter, len(vs))
	for i, v := range vs {
		out[i] = AgentVCenter{Source: v.Source, Reachable: v.Reachable, Since: msTime(v.Since), LastOK: msTime(v.LastOK), LastError: v.LastError}
	}
	return out
}

// AgentPlugin is one collector plugin of an agent, as its last heartbeat
// reported it. Times are UTC; one not known yet is null.
type AgentPlugin struct {
	Name        string     `json:"name"`
	Version     string     `json:"version"`
	State       string     `json:"state"`
	Restarts    int64      `json:"restarts"`
	LastError   string     `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
	LastCollect *time.Time `json:"last_collect"`
	Collects    uint64     `json:"collects"`
	Failures    uint64     `json:"failures"`
	Samples     uint64     `json:"samples"`
}

func agentPlugins(ps []protocol.PluginStatus) []AgentPlugin {
	out := make([]AgentPlugin, len(ps))
	for i, p := range ps {
		out[i] = AgentPlugin{Name: p.Name, Version: p.Version, State: p.State, Restarts: p.Restarts, LastError: p.LastError,
			LastErrorAt: msTime(p.LastErrorAt), LastCollect: msTime(p.LastCollect), Collects: p.Collects, Failures: p.Failures, Samples: p.Samples}
	}
	return out
}

// maxJSONTimeMS is 9999-12-31T23:59:59.999Z, the last instant RFC 3339
// (and so a JSON time) can write.
const maxJSONTimeMS = 253402300799999

// msTime is a Unix-millisecond time, or nil for zero and for a time RFC
// 3339 cannot write (past the year 9999: an agent's clock or a hostile
// heartbeat), which would otherwise fail the whole response.
func msTime(ms int64) *time.Time {
	if ms <= 0 || ms > maxJSONTimeMS {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func agentState(a *store.Agent) string {
	switch {
	case a.RevokedAt != nil:
		return AgentRevoked
	case a.Connected:
		return AgentConnected
	}
	return AgentDisconnected
}

func agentOf(a *store.Agent) Agent {
	return Agent{
		ID: a.ID, Name: a.Name, Site: a.Site, Version: a.Version,
		State: agentState(a), Connected: a.Connected, RemoteAddr: a.RemoteAddr,
		EnrolledAt: a.EnrolledAt.UTC(), FirstSeen: utcPtr(a.FirstSeen), LastSeen: utcPtr(a.LastSeen),
		SpoolDepth: a.SpoolDepth, SpoolBytes: a.SpoolBytes, OldestUnsentMS: a.OldestUnsentMS,
		CollectionLagMS: a.LagMS, DroppedBatches: a.Dropped,
		CertNotAfter: a.CertNotAfter.UTC(), RevokedAt: utcPtr(a.RevokedAt), Plugins: agentPlugins(a.Plugins),
		SpoolMaxBytes: positive(a.SpoolMaxBytes), VCenters: agentVCenters(a.VCenters),
	}
}

// positive is n, or nil when it is not positive (not reported).
func positive(n int64) *int64 {
	if n <= 0 {
		return nil
	}
	return &n
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// agentOrder compares agents by one sort field. A time not known yet sorts
// before every known time.
var agentOrder = map[string]func(a, b *store.Agent) int{
	"site":              func(a, b *store.Agent) int { return cmp.Compare(a.Site, b.Site) },
	"name":              func(a, b *store.Agent) int { return cmp.Compare(a.Name, b.Name) },
	"version":           func(a, b *store.Agent) int { return cmp.Compare(a.Version, b.Version) },
	"state":             func(a, b *store.Agent) int { return cmp.Compare(agentState(a), agentState(b)) },
	"enrolled_at":       func(a, b *store.Agent) int { return a.EnrolledAt.Compare(b.EnrolledAt) },
	"last_seen":         func(a, b *store.Agent) int { return compareTimes(a.LastSeen, b.LastSeen) },
	"cert_not_after":    func(a, b *store.Agent) int { return a.CertNotAfter.Compare(b.CertNotAfter) },
	"spool_depth":       func(a, b *store.Agent) int { return cmp.Compare(a.SpoolDepth, b.SpoolDepth) },
	"spool_bytes":       func(a, b *store.Agent) int { return cmp.Compare(a.SpoolBytes, b.SpoolBytes) },
	"oldest_unsent_ms":  func(a, b *store.Agent) int { return cmp.Compare(a.OldestUnsentMS, b.OldestUnsentMS) },
	"collection_lag_ms": func(a, b *store.Agent) int { return cmp.Compare(a.LagMS, b.LagMS) },
	"dropped_batches":   func(a, b *store.Agent) int { return cmp.Compare(a.Dropped, b.Dropped) },
}

// agentSortFields are the sort fields query.sort accepts.
var agentSortFields = func() map[string]string {
	m := make(map[string]string, len(agentOrder))
	for k := range agentOrder {
		m[k] = k
	}
	return m
}()

func compareTimes(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

// agentsResource is /agents: the agent registry, enrollment tokens and
// revocation.
type agentsResource struct{ a *API }

// Routes lists the /agents routes.
func (h *agentsResource) Routes() []Route {
	const tag = "agents"
	agent := ref("Agent")
	return []Route{
		{Method: "GET", Pattern: "/agents", Access: auth.PermSystemRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "The agent registry: state, version, spool depth, lag, last seen",
			Params: append([]Param{
				{Name: "site", Description: "only agents of this site"},
				{Name: "state", Description: "connected, disconnected or revoked"},
				{Name: "q", Description: "substring of the agent's name, any case"},
				{Name: "sort", Description: "comma-separated fields, - for descending (default site,name): " + strings.Join(sortedKeys(agentSortFields), ", ")},
			}, pageParams...), Response: pageSchema(agent), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/agents/{id}", Access: auth.PermSystemRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary: "Get an agent", Response: agent, Errors: []int{401, 403, 404}}},
		{Method: "POST", Pattern: "/agents/enrollment-tokens", Access: auth.PermSystemWrite, Action: "agent.enrollment_token.create", Resource: "site", Handle: h.createToken, Doc: Doc{Tag: tag,
			Summary: "Issue a single-use enrollment token for a new agent of a site (the site is created if new); the token is shown only in this response. " +
				"A site outside the caller's data scope is 404 SITE_NOT_FOUND.",
			Body: ref("EnrollmentTokenCreate"), Response: ref("EnrollmentToken"), Status: http.StatusCreated, Errors: []int{401, 403, 404, 422}}},
		{Method: "DELETE", Pattern: "/agents/{id}", Access: auth.PermSystemWrite, Action: "agent.revoke", Resource: "agent", Handle: h.revoke, Doc: Doc{Tag: tag,
			Summary:  "Revoke an agent: its certificate is refused from now on and its connection to this aggregator is closed at once (idempotent)",
			Response: agent, Errors: []int{401, 403, 404}}},
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (h *agentsResource) list(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	site := q.str("site", 63)
	state := q.oneOf("state", AgentConnected, AgentDisconnected, AgentRevoked)
	name := strings.ToLower(q.str("q", 200))
	keys := q.sort(agentSortFields)
	page, size := q.page()
	if err := q.err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		keys = []auth.SortKey{{Field: "site"}, {Field: "name"}}
	}
	all, err := h.a.agents.Agents(r.Context())
	if err != nil {
		return err
	}
	var match []*store.Agent
	for i := range all {
		ag := &all[i]
		if (site != "" && ag.Site != site) || (state != "" && agentState(ag) != state) ||
			(name != "" && !strings.Contains(strings.ToLower(ag.Name), name)) {
			continue
		}
		match = append(match, ag)
	}
	slices.SortFunc(match, func(a, b *store.Agent) int {
		for _, k := range keys {
			c := agentOrder[k.Field](a, b)
			if k.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.ID, b.ID)
	})
	items := []Agent{}
	for i := (page - 1) * size; i < len(match) && i < page*size; i++ {
		items = append(items, agentOf(match[i]))
	}
	writeData(w, r, http.StatusOK, pageOf[Agent]{Items: items, Total: len(match), Page: page, PageSize: size})
	return nil
}

func (h *agentsResource) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeAgentNotFound)
	if err != nil {
		return err
	}
	ag, err := h.a.agents.AgentByID(r.Context(), id.String())
	if err != nil {
		return notFound(err, CodeAgentNotFound)
	}
	writeData(w, r, http.StatusOK, agentOf(&ag))
	return nil
}

type enrollTokenCreate struct {
	Site *string `json:"site"`
	TTL  *string `json:"ttl"`

	ttl time.Duration // parsed by validate
}

func (b *enrollTokenCreate) validate(v *fieldErrors) {
	if v.required("site", b.Site != nil && *b.Site != "") {
		v.pattern("site", *b.Site, siteNameRE, "1-63 lowercase letters, digits, . _ -, starting with a letter or digit")
	}
	b.ttl = DefaultEnrollTTL
	if b.TTL == nil {
		return
	}
	d, err := time.ParseDuration(*b.TTL)
	switch {
	case err != nil:
		v.add("ttl", FieldInvalidFormat, map[string]any{"format": "a duration such as 30m or 24h"})
	case d < MinEnrollTTL || d > MaxEnrollTTL:
		v.add("ttl", FieldOutOfRange, map[string]any{"min": "1m", "max": "720h"})
	default:
		b.ttl = d
	}
}

func (h *agentsResource) createToken(w http.ResponseWriter, r *http.Request) error {
	var body enrollTokenCreate
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	token, expires, err := h.a.agents.IssueEnrollToken(r.Context(), *body.Site, body.ttl, principalLabel(p))
	if err != nil {
		// A site outside the caller's data scope.
		return notFound(err, CodeSiteNotFound)
	}
	expires = expires.UTC()
	// The token is a credential: it goes to the caller and nowhere else
	// (not the audit summary, not the log).
	setAuditResource(r, *body.Site)
	addAuditSummary(r, "site", *body.Site)
	addAuditSummary(r, "expires_at", expires.Format(time.RFC3339))
	writeData(w, r, http.StatusCreated, map[string]any{"token": token, "site": *body.Site, "expires_at": expires})
	return nil
}

// principalLabel names the caller the way audit records do: the username,
// and the API token's name when the call was made with one.
func principalLabel(p *auth.Principal) string {
	if p == nil {
		return ""
	}
	if !p.IsSession() {
		return p.Username + " (token " + p.TokenName + ")"
	}
	return p.Username
}

func (h *agentsResource) revoke(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeAgentNotFound)
	if err != nil {
		return err
	}
	ctx := r.Context()
	before, err := h.a.agents.AgentByID(ctx, id.String())
	if err != nil {
		return notFound(err, CodeAgentNotFound)
	}
	addAuditSummary(r, "name", before.Name)
	addAuditSummary(r, "site", before.Site)
	addAuditSummary(r, "already_revoked", before.RevokedAt != nil)
	if err := h.a.agents.RevokeAgent(ctx, before.ID); err != nil {
		return notFound(err, CodeAgentNotFound)
	}
	// Also when it was revoked already: a revocation made elsewhere (the
	// CLI, another replica) closes connections only at the next heartbeat.
	h.a.agents.Disconnect(before.ID)
	after, err := h.a.agents.AgentByID(ctx, before.ID)
	if err != nil {
		return notFound(err, CodeAgentNotFound)
	}
	writeData(w, r, http.StatusOK, agentOf(&after))
	return nil
}
