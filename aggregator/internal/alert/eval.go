package alert

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// State is the state of one (rule, entity) instance.
type State string

// The states of an instance. Resolved is not a state of its own: a firing
// instance that resolves returns to ok, and its alert is resolved.
const (
	StateOK      State = "ok"
	StatePending State = "pending"
	StateFiring  State = "firing"
	StateUnknown State = "unknown"
)

// Transition kinds, as they appear in an alert's timeline.
const (
	TrPending   = "pending"   // ok → pending (the `for` timer starts)
	TrCancelled = "cancelled" // pending → ok before `for` elapsed
	TrFiring    = "firing"    // pending (or ok, without `for`) → firing
	TrKeeping   = "keeping"   // firing, the condition stopped holding: keep_firing_for runs
	TrKept      = "kept"      // firing, the condition holds again within keep_firing_for
	TrResolved  = "resolved"  // firing → ok
	TrUnknown   = "unknown"   // pending or firing → unknown (no data, site offline)
	TrKnown     = "known"     // unknown → firing again (data is back and the condition holds)
	TrForgotten = "forgotten" // unknown → ok (data is back; nothing was firing)
	// TrUnsuppressed: a firing instance suppressed at firing whose cause
	// (parent down, maintenance) is gone: it pages now.
	TrUnsuppressed = "unsuppressed"
)

// feature is one aggregation of one metric over one window; every rule of
// a kind that needs it shares its value at each evaluation.
type feature struct {
	slot     int
	agg      string
	windowMS int64
}

// cond is a compiled Condition.
type cond struct {
	feat     int
	op       string
	thr, clr float64
}

// compiled is a rule ready to evaluate.
type compiled struct {
	rule      *Rule
	conds     []cond
	any       bool
	forMS     int64
	keepMS    int64
	uses      []bool // by slot
	universal bool   // the scope is every entity of the kind
	indexed   bool   // in a thrGroup of its kind
	unit      string
}

// kindRules are the enabled rules of one entity kind, compiled together:
// the metrics they read (slots), the aggregations they need (features).
type kindRules struct {
	kind     string
	slots    map[string]int // metric → slot
	names    []string       // slot → metric
	keepMS   []int64        // slot → how much history its windows need
	units    []string       // slot → the unit its metric arrived with
	feats    []feature
	featIdx  map[feature]int
	rules    []*compiled
	univ     []*compiled // rules whose scope is every entity, not indexed
	scoped   []*compiled // the others, matched per entity
	features int
	// groups index the universal rules of one condition on an ordering
	// operator by threshold, per (feature, operator): for an entity with
	// no instance of them, only the rules whose threshold the value
	// crosses need evaluating; the others cannot change state.
	groups []*thrGroup
}

// thrGroup is the universal single-condition rules of one feature and
// one operator, sorted by threshold.
type thrGroup struct {
	feat  int
	slot  int
	op    string
	thr   []float64
	rules []*compiled
}

// quiet reports whether no rule of g can hold on any aggregation of w:
// its values' bounds do not reach the lowest threshold (> and >=) or the
// highest (< and <=). Loose bounds, or bounds that still count points no
// window needs, are tightened before saying no.
func (g *thrGroup) quiet(w *window) bool {
	if w.n == 0 || g.misses(w.lo, w.hi) {
		return true
	}
	if w.tight && w.at(0).ts > w.last-int64(w.keep) {
		return false // exact bounds of points all still needed
	}
	w.tighten()
	return g.misses(w.lo, w.hi)
}

func (g *thrGroup) misses(lo, hi float64) bool {
	switch g.op {
	case ">":
		return hi <= g.thr[0]
	case ">=":
		return hi < g.thr[0]
	case "<":
		return lo >= g.thr[len(g.thr)-1]
	case "<=":
		return lo > g.thr[len(g.thr)-1]
	}
	return false
}

// firing returns the rules of g whose condition holds for v.
func (g *thrGroup) firing(v float64) []*compiled {
	switch g.op {
	case ">": // thr < v
		return g.rules[:sort.SearchFloat64s(g.thr, v)]
	case ">=": // thr <= v
		return g.rules[:sort.Search(len(g.thr), func(i int) bool { return g.thr[i] > v })]
	case "<": // thr > v
		return g.rules[sort.Search(len(g.thr), func(i int) bool { return g.thr[i] > v }):]
	case "<=": // thr >= v
		return g.rules[sort.SearchFloat64s(g.thr, v):]
	}
	return nil
}

// compileKind compiles the rules of one kind; index groups the rules that
// thresholds can index (see kindRules.groups).
func compileKind(kind string, rules []*Rule, index bool) *kindRules {
	kr := &kindRules{kind: kind, slots: map[string]int{}, featIdx: map[feature]int{}}
	for _, r := range rules {
		c := &compiled{rule: r, any: r.Match == MatchAny, forMS: ms(r.For), keepMS: ms(r.KeepFiringFor), universal: r.Scope.Empty()}
		for _, cd := range r.Conditions {
			slot, ok := kr.slots[cd.Metric]
			if !ok {
				slot = len(kr.names)
				kr.slots[cd.Metric] = slot
				kr.names = append(kr.names, cd.Metric)
				kr.keepMS = append(kr.keepMS, 0)
			}
			f := feature{slot: slot, agg: cd.Agg, windowMS: ms(cd.Window)}
			if f.agg == AggLast {
				f.windowMS = 0
			}
			kr.keepMS[slot] = max(kr.keepMS[slot], f.windowMS)
			fi, ok := kr.featIdx[f]
			if !ok {
				fi = len(kr.feats)
				kr.feats = append(kr.feats, f)
				kr.featIdx[f] = fi
			}
			clr := cd.Threshold
			if cd.ClearThreshold != nil {
				clr = *cd.ClearThreshold
			}
			c.conds = append(c.conds, cond{feat: fi, op: cd.Op, thr: cd.Threshold, clr: clr})
		}
		kr.rules = append(kr.rules, c)
		switch {
		case !c.universal:
			kr.scoped = append(kr.scoped, c)
		case index && len(c.conds) == 1 && strings.ContainsAny(c.conds[0].op, "<>"):
			c.indexed = true
		default:
			kr.univ = append(kr.univ, c)
		}
	}
	byKey := map[[2]any]*thrGroup{}
	for _, c := range kr.rules {
		if !c.indexed {
			continue
		}
		cd := c.conds[0]
		key := [2]any{cd.feat, cd.op}
		g := byKey[key]
		if g == nil {
			g = &thrGroup{feat: cd.feat, slot: kr.feats[cd.feat].slot, op: cd.op}
			byKey[key] = g
			kr.groups = append(kr.groups, g)
		}
		g.rules = append(g.rules, c)
	}
	for _, g := range kr.groups {
		sort.SliceStable(g.rules, func(i, j int) bool { return g.rules[i].conds[0].thr < g.rules[j].conds[0].thr })
		for _, c := range g.rules {
			g.thr = append(g.thr, c.conds[0].thr)
		}
	}
	for _, c := range kr.rules {
		c.uses = make([]bool, len(kr.names))
		for _, cd := range c.conds {
			c.uses[kr.feats[cd.feat].slot] = true
		}
	}
	kr.features = len(kr.feats)
	kr.units = make([]string, len(kr.names))
	return kr
}

func ms(d Duration) int64 { return int64(d) / 1e6 }

// point is one sample of a window.
type point struct {
	ts int64
	v  float64
}

// window is the recent history of one metric of one entity: a ring
// buffer, oldest first. Points older than the metric's longest window
// (keep) are forgotten in bulk when the buffer is full, not one per push,
// and the capacity (a power of two) doubles only while more than half of
// it is still needed after that; so in steady state a push neither
// allocates nor copies, and rarely reads the oldest point.
//
// lo and hi bound the values in the buffer (and so every aggregation of
// any window of it): a push widens them, a point forgotten leaves them as
// they were (still bounds, no longer tight) until tighten recomputes them.
// They let a threshold group skip a window its thresholds cannot reach
// without aggregating it (thrGroup.quiet).
//
// It fits one 64-byte cache line (indexes and keep as int32: a window is
// at most MaxWindow, 24 h).
type window struct {
	buf    []point
	head   int32 // index in buf of the oldest point
	n      int32
	keep   int32 // ms of history the metric's windows need
	tight  bool  // lo and hi are the buffer's minimum and maximum
	last   int64 // newest timestamp pushed
	lo, hi float64
}

// at returns the i-th point, oldest first.
func (w *window) at(i int) *point { return &w.buf[(int(w.head)+i)&(len(w.buf)-1)] }

// push appends a sample (ts newer than every point); keepMS is how much
// history the metric's windows need.
func (w *window) push(ts int64, v float64, keepMS int64) {
	w.keep = int32(min(keepMS, math.MaxInt32))
	if int(w.n) == len(w.buf) {
		w.forget(ts - keepMS)
		if int(w.n) > len(w.buf)/2 || len(w.buf) == 0 {
			grown := make([]point, max(2, 2*len(w.buf)))
			for i := range int(w.n) {
				grown[i] = *w.at(i)
			}
			w.buf, w.head = grown, 0
		}
	}
	switch {
	case w.n == 0:
		w.lo, w.hi, w.tight = v, v, true
	case v < w.lo:
		w.lo = v
	case v > w.hi:
		w.hi = v
	}
	w.buf[int(w.head+w.n)&(len(w.buf)-1)] = point{ts, v}
	w.n++
	w.last = ts
}

// forget drops the points at or before cut but the newest (a "last"
// needs it whatever its age).
func (w *window) forget(cut int64) {
	mask := int32(len(w.buf) - 1)
	for w.n > 1 && w.buf[w.head].ts <= cut {
		w.head = (w.head + 1) & mask
		w.n--
		w.tight = false
	}
}

// tighten makes lo and hi the buffer's minimum and maximum.
func (w *window) tighten() {
	w.forget(w.last - int64(w.keep))
	if w.n == 0 {
		return
	}
	lo, hi := w.at(0).v, w.at(0).v
	for i := 1; i < int(w.n); i++ {
		x := w.at(i).v
		if x < lo {
			lo = x
		}
		if x > hi {
			hi = x
		}
	}
	w.lo, w.hi, w.tight = lo, hi, true
}

// agg aggregates the samples in (t-windowMS, t]; ok is false when there
// are none.
func (w *window) agg(agg string, t, windowMS int64) (float64, bool) {
	end := int(w.n)
	for end > 0 && w.at(end-1).ts > t {
		end--
	}
	if end == 0 {
		return 0, false
	}
	if agg == AggLast || windowMS <= 0 {
		return w.at(end - 1).v, true
	}
	from := t - windowMS
	mask := len(w.buf) - 1
	if agg == AggMin || agg == AggMax {
		// Values are never NaN (the engine skips them), so comparisons
		// are the builtins' min and max.
		best, n := 0.0, 0
		for i := end - 1; i >= 0; i-- {
			p := &w.buf[(int(w.head)+i)&mask]
			if p.ts <= from {
				break
			}
			if n == 0 || (agg == AggMin && p.v < best) || (agg == AggMax && p.v > best) {
				best = p.v
			}
			n++
		}
		return best, n > 0
	}
	var sum float64
	n := 0
	for i := end - 1; i >= 0; i-- {
		p := &w.buf[(int(w.head)+i)&mask]
		if p.ts <= from {
			break
		}
		sum += p.v
		n++
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// entityKey names an entity: its site, its source (the vCenter; "" for a
// site) and its kind and id (moref; the site's name for a site).
type entityKey struct {
	site, source, kind, id string
}

// entity is what the engine keeps of one entity: its windows, the shared
// feature values of the current evaluation, and its instances that are not
// ok (an ok instance costs nothing).
type entity struct {
	key    entityKey
	wins   []window
	lastTS int64
	feats  []featCache             // by feature
	inst   map[uuid.UUID]*instance // nil until the first
	// applies caches the scoped rules that match this entity, for the
	// engine generation gen.
	applies []*compiled
	gen     uint64
}

// featCache is a feature's value at one evaluation time (NaN: no data).
type featCache struct {
	at int64
	v  float64
}

func (en *entity) feature(kr *kindRules, fi int, t int64) (float64, bool) {
	fc := &en.feats[fi]
	if fc.at == t {
		return fc.v, !math.IsNaN(fc.v)
	}
	f := kr.feats[fi]
	v, ok := en.wins[f.slot].agg(f.agg, t, f.windowMS)
	if !ok {
		v = math.NaN()
	}
	fc.v, fc.at = v, t
	return v, ok
}

// reshape fits the entity's windows and feature caches to kr (after a
// rules reload), keeping the history of the metrics that remain.
func (en *entity) reshape(old, kr *kindRules) {
	wins := make([]window, len(kr.names))
	if old != nil {
		for name, slot := range kr.slots {
			if o, ok := old.slots[name]; ok && o < len(en.wins) {
				wins[slot] = en.wins[o]
			}
		}
	}
	en.wins = wins
	en.feats = make([]featCache, kr.features)
	for i := range en.feats {
		en.feats[i].at = math.MinInt64
	}
}

// instance is the state of one (rule, entity) that is not ok.
type instance struct {
	state    State
	prior    State // the state before unknown
	since    int64 // ms: pending since, firing since, unknown since
	pending  int64 // ms: when the pending that led to firing began (0: none)
	lastTrue int64 // ms: the condition last held (keep_firing_for)
	keeping  bool
	lastAt   int64 // ms: the last evaluation (event time)
	alertID  int64
	value    float64
	version  int64 // of its alert_states row; 0: none yet
	flags    uint8 // flagLate, flagSilenced of its alert
}

// outcome is one evaluation of a rule's conditions: whether it fires (by
// the thresholds), holds (by the clear thresholds), and the value shown.
type outcome struct {
	fire, hold bool
	value      float64
	threshold  float64
	ok         bool // false: no data for the conditions
}

func (c *compiled) eval(kr *kindRules, en *entity, t int64) outcome {
	var o outcome
	known := 0
	for i, cd := range c.conds {
		v, ok := en.feature(kr, cd.feat, t)
		if !ok {
			if !c.any {
				return outcome{}
			}
			continue
		}
		known++
		f, h := compare(cd.op, v, cd.thr), compare(cd.op, v, cd.clr)
		if i == 0 || (c.any && f && !o.fire) {
			o.value, o.threshold = v, cd.thr
		}
		if c.any {
			o.fire, o.hold = o.fire || f, o.hold || h
		} else if known == 1 {
			o.fire, o.hold = f, h
		} else {
			o.fire, o.hold = o.fire && f, o.hold && h
		}
	}
	o.ok = known > 0
	return o
}

// step is the state machine: it applies one evaluation at event time t to
// the instance (nil: ok) and returns the instance after it and the
// transition it made ("" for none).
func (c *compiled) step(in *instance, t int64, o outcome) (*instance, string) {
	if !o.ok {
		return in, ""
	}
	if in == nil {
		if !o.fire {
			return nil, ""
		}
		in = &instance{state: StateOK}
	}
	if in.lastAt != 0 && t <= in.lastAt {
		return in, "" // already evaluated at or after t
	}
	in.lastAt = t
	in.value = o.value
	switch in.state {
	case StateOK:
		if !o.fire {
			return in, ""
		}
		in.lastTrue = t
		if c.forMS == 0 {
			in.state, in.since, in.pending = StateFiring, t, 0
			return in, TrFiring
		}
		in.state, in.since = StatePending, t
		return in, TrPending
	case StatePending:
		if !o.fire {
			in.state = StateOK
			return in, TrCancelled
		}
		in.lastTrue = t
		if t-in.since >= c.forMS {
			in.state, in.pending, in.since = StateFiring, in.since, t
			return in, TrFiring
		}
		return in, ""
	case StateFiring:
		return c.stepFiring(in, t, o)
	case StateUnknown:
		switch in.prior {
		case StateFiring:
			in.state = StateFiring
			in.keeping = false
			if o.hold {
				in.lastTrue = t
				return in, TrKnown
			}
			if t-in.lastTrue >= c.keepMS {
				in.state = StateOK
				return in, TrResolved
			}
			in.keeping = true
			return in, TrKnown
		default:
			in.state, in.prior = StateOK, StateOK
			if o.fire {
				in.lastTrue = t
				if c.forMS == 0 {
					in.state, in.since, in.pending = StateFiring, t, 0
					return in, TrFiring
				}
				in.state, in.since = StatePending, t
				return in, TrPending
			}
			return in, TrForgotten
		}
	}
	return in, ""
}

func (c *compiled) stepFiring(in *instance, t int64, o outcome) (*instance, string) {
	if o.hold {
		in.lastTrue = t
		if in.keeping {
			in.keeping = false
			return in, TrKept
		}
		return in, ""
	}
	if c.keepMS == 0 || t-in.lastTrue >= c.keepMS {
		in.state, in.keeping = StateOK, false
		return in, TrResolved
	}
	if !in.keeping {
		in.keeping = true
		return in, TrKeeping
	}
	return in, ""
}

// rulesFor returns the rules of kr that apply to the entity: the universal
// ones and the scoped ones that match (cached per engine generation).
func (en *entity) rulesFor(kr *kindRules, gen uint64, match func(*compiled, entityKey) bool) []*compiled {
	if len(kr.scoped) == 0 {
		return nil
	}
	if en.gen != gen {
		en.applies = en.applies[:0]
		for _, c := range kr.scoped {
			if match(c, en.key) {
				en.applies = append(en.applies, c)
			}
		}
		en.applies = slices.Clip(en.applies)
		en.gen = gen
	}
	return en.applies
}
