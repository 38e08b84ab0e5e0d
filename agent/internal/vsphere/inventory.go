package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// InventoryConfig tunes the inventory watcher. Zero values take defaults.
type InventoryConfig struct {
	// Debounce is how long changes are gathered before one delta is sent,
	// so a storm of updates (a host reconnecting re-"enters" all its VMs)
	// becomes one batch. Default 1 s.
	Debounce time.Duration
	// MaxWait bounds one WaitForUpdatesEx call. The call returns when
	// something changed, and is cancelled with CancelWaitForUpdates when a
	// tag refresh or a resync is due (and with its context on shutdown),
	// so the bound only decides how often an idle vCenter sees a call.
	// Default 1 min: one call a minute, and no call held forever by a
	// proxy that cuts idle requests or by a server that misses a vanished
	// client (govmomi's simulator does). Negative: no bound, vCenter's
	// own limit applies. SetMaxWait changes it at runtime (where zero
	// means no bound).
	MaxWait time.Duration
	// TagInterval is how often vSphere tags are re-read over vAPI (tags
	// have no property-collector updates). Default 5 min.
	TagInterval time.Duration
	// MaxObjectUpdates caps one WaitForUpdatesEx result; larger change sets
	// arrive truncated and are read on. Default 1000: the fast decoder
	// (updates.go) holds a whole response in memory, ~5 MB at 1,000 VMs
	// with the watched properties, and a page costs one round trip.
	// (vCenter's own default is 100; the simulator never sends more.)
	MaxObjectUpdates int32
}

func (c *InventoryConfig) defaults() {
	if c.Debounce <= 0 {
		c.Debounce = time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = defaultMaxWait
	}
	if c.TagInterval <= 0 {
		c.TagInterval = 5 * time.Minute
	}
	if c.MaxObjectUpdates <= 0 {
		c.MaxObjectUpdates = 1000
	}
}

// defaultMaxWait is InventoryConfig.MaxWait's default.
const defaultMaxWait = time.Minute

// Entity is one object the perf Collector may query.
type Entity struct {
	Kind   string // "vm", "host", "cluster", "datastore"
	Ref    types.ManagedObjectReference
	Active bool // VM powered on / host connected / datastore accessible
}

// Inventory keeps a live copy of one endpoint's inventory with a
// container view and WaitForUpdatesEx, and sends it to the Sink: a full
// snapshot after every (re)connect, then debounced deltas. Entities is safe
// for concurrent use; Run must be called once.
type Inventory struct {
	sess *Session
	sink Sink
	log  *slog.Logger
	cfg  InventoryConfig

	tagReq    chan struct{}
	resyncReq chan struct{}

	mu       sync.RWMutex
	objs     map[string]*invObject
	fields   map[int32]string
	entities []Entity // as of the last complete update set; see Entities
	// The current watch's property collector and connection, and the
	// event collectors it follows (see inventory_announce.go).
	pc     *property.Collector
	pcGen  uint64
	follow map[types.ManagedObjectReference]*follower

	// loop-owned state
	dirty      map[string]bool // id → true; deleted objects are in gone
	gone       map[string]string
	firstDirty time.Time
	fullSent   bool
	tagsLast   time.Time // the last tag refresh began; zero: none on this watch
	tagsWarned bool
	// wantTags and wantResync record requests that interrupted a wait.
	wantTags, wantResync bool

	// tagEvery and maxWait are the tag interval and the WaitForUpdatesEx
	// bound in force (ns; maxWait 0: none), set at runtime by
	// SetTagInterval and SetMaxWait, which wake settingsChanged.
	tagEvery, maxWait atomic.Int64
	settingsChanged   signal

	afterPage func(truncated bool) // test hook: called after each update set is applied
}

// tagsDue is when the next tag refresh is due (loop-owned state).
func (w *Inventory) tagsDue() time.Time {
	if w.tagsLast.IsZero() {
		return time.Time{}
	}
	return w.tagsLast.Add(w.TagInterval())
}

// NewInventory returns a watcher for sess's endpoint.
func NewInventory(sess *Session, sink Sink, cfg InventoryConfig, log *slog.Logger) *Inventory {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Inventory{
		sess: sess, sink: sink, cfg: cfg,
		log:       log.With("endpoint", sess.Name(), "part", "inventory"),
		tagReq:    make(chan struct{}, 1),
		resyncReq: make(chan struct{}, 1),
		objs:      map[string]*invObject{},
		fields:    map[int32]string{},
		follow:    map[types.ManagedObjectReference]*follower{},
	}
	w.tagEvery.Store(int64(cfg.TagInterval))
	w.maxWait.Store(int64(max(cfg.MaxWait, 0)))
	return w
}

// RefreshTags asks the running watcher to re-read vSphere tags soon.
func (w *Inventory) RefreshTags() {
	select {
	case w.tagReq <- struct{}{}:
	default:
	}
}

// Resync asks the running watcher to send a full snapshot again (the
// aggregator's "resync_inventory" command).
func (w *Inventory) Resync() {
	select {
	case w.resyncReq <- struct{}{}:
	default:
	}
}

// Entities returns the watched VMs, hosts, clusters and datastores as of
// the last complete update set, sorted by ID; nil until the first full
// inventory has been read. A paged (truncated) initial retrieval is not
// visible half-way, so the collector's first cycle covers every entity,
// and after a reconnect the previous list stays in use until the new
// snapshot is complete. The slice is shared: callers must not modify it.
func (w *Inventory) Entities() []Entity {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.entities
}

// publishEntities recomputes Entities from the current objects.
func (w *Inventory) publishEntities() {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Entity, 0, len(w.objs))
	for _, o := range w.objs {
		e := Entity{Kind: o.kind, Ref: o.ref}
		switch o.kind {
		case "vm":
			e.Active = o.str("runtime.powerState") == string(types.VirtualMachinePowerStatePoweredOn)
		case "host":
			e.Active = o.str("runtime.connectionState") == string(types.HostSystemConnectionStateConnected)
		case "datastore":
			acc, _ := o.props["summary.accessible"].(bool)
			e.Active = acc
		case "cluster":
			e.Active = true
		default:
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.Value < out[j].Ref.Value })
	w.entities = out
}

// Run watches until ctx is done, reconnecting as needed. It returns nil
// when ctx is cancelled.
func (w *Inventory) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		conn, err := w.sess.Conn(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("inventory: no session", "err", err)
			}
			continue
		}
		err = w.watch(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		if !w.sess.Check(conn, err) {
			w.log.Error("inventory: watch failed, restarting", "err", err)
			sleepCtx(ctx, watchRetry)
		}
	}
	return nil
}

// watch runs one property-collector session on conn until an error.
func (w *Inventory) watch(ctx context.Context, conn *Conn) error {
	vc := conn.Vim()
	pc, err := property.DefaultCollector(vc).Create(ctx)
	if err != nil {
		return fmt.Errorf("inventory: create property collector: %w", err)
	}
	defer func() { _ = pc.Destroy(context.WithoutCancel(ctx)) }()

	kinds := make([]string, 0, len(watchedTypes))
	propSet := make([]types.PropertySpec, 0, len(watchedTypes)+1)
	for _, t := range watchedTypes {
		kinds = append(kinds, t.vimType)
		propSet = append(propSet, types.PropertySpec{Type: t.vimType, PathSet: t.paths})
	}
	cv, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, kinds, true)
	if err != nil {
		return fmt.Errorf("inventory: create container view: %w", err)
	}
	defer func() { _ = cv.Destroy(context.WithoutCancel(ctx)) }()

	objSet := []types.ObjectSpec{{
		Obj:  cv.Reference(),
		Skip: types.NewBool(true),
		SelectSet: []types.BaseSelectionSpec{
			&types.TraversalSpec{Type: "ContainerView", Path: "view", Skip: types.NewBool(false)},
		},
	}}
	if cfm := vc.ServiceContent.CustomFieldsManager; cfm != nil {
		objSet = append(objSet, types.ObjectSpec{Obj: *cfm, Skip: types.NewBool(false)})
		propSet = append(propSet, types.PropertySpec{Type: "CustomFieldsManager", PathSet: []string{"field"}})
	}
	if _, err := pc.CreateFilter(ctx, types.CreateFilter{
		Spec: types.PropertyFilterSpec{ObjectSet: objSet, PropSet: propSet},
	}); err != nil {
		return fmt.Errorf("inventory: create filter: %w", err)
	}

	w.startFollowing(ctx, pc, conn.Gen)
	defer w.stopFollowing(pc)

	w.mu.Lock()
	w.objs = map[string]*invObject{}
	w.fields = map[int32]string{}
	w.mu.Unlock()
	w.dirty, w.gone, w.fullSent, w.tagsLast = map[string]bool{}, map[string]string{}, false, time.Time{}

	version := ""
	w.wantTags, w.wantResync = false, false
	for {
		// Wait up to MaxWait (zero: as long as vCenter allows), or
		// until a gathering delta's debounce ends.
		opts := &types.WaitOptions{MaxObjectUpdates: w.cfg.MaxObjectUpdates}
		maxWait := w.MaxWait()
		wait := maxWait
		switch {
		case !w.fullSent:
			wait = watchRetry // the sink refused the snapshot: try again soon
		case len(w.dirty)+len(w.gone) > 0:
			wait = max(time.Second, w.cfg.Debounce-time.Since(w.firstDirty))
		}
		if wait > 0 {
			secs := int32((wait + time.Second - 1) / time.Second)
			opts.MaxWaitSeconds = &secs
		}
		// When the tags are due the wait is cancelled (not before the full
		// snapshot is out: its retry bound is short anyway).
		wake := w.tagsDue
		if !w.fullSent {
			wake = nil
		}
		set, err := w.waitInterruptible(ctx, vc, pc.Reference(), &types.WaitForUpdatesEx{
			This: pc.Reference(), Version: version, Options: opts,
		}, wake, waitBound{maxWait, wait}, version != "")
		if err != nil {
			return fmt.Errorf("inventory: wait for updates: %w", err)
		}
		truncated := false
		if set != nil {
			version = set.Version
			truncated = set.Truncated != nil && *set.Truncated
			for _, fs := range set.FilterSet {
				w.apply(fs.ObjectSet)
			}
		}
		if !truncated && (set != nil || w.entities == nil) {
			w.publishEntities()
		}
		if w.afterPage != nil {
			w.afterPage(truncated)
		}
		if truncated {
			continue // more of the same change set follows; send it whole
		}
		select {
		case <-w.resyncReq:
			w.wantResync = true
		case <-w.tagReq:
			w.wantTags = true
		default:
		}
		if w.wantResync {
			w.wantResync = false
			w.fullSent = false
		}
		if !w.fullSent {
			if w.wantTags || time.Now().After(w.tagsDue()) {
				w.wantTags = false
				w.refreshTags(ctx, conn)
			}
			if err := w.sendFull(ctx); err != nil {
				w.log.Warn("inventory: sink refused full snapshot, will retry", "err", err)
			}
			continue
		}
		if w.wantTags || !time.Now().Before(w.tagsDue()) {
			w.wantTags = false
			w.refreshTags(ctx, conn)
		}
		if len(w.dirty)+len(w.gone) > 0 && time.Since(w.firstDirty) >= w.cfg.Debounce {
			if err := w.sendDelta(ctx); err != nil {
				w.log.Warn("inventory: sink refused delta, will retry", "err", err)
			}
		}
	}
}

// apply folds object updates into the state and marks what changed.
func (w *Inventory) apply(updates []types.ObjectUpdate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range updates {
		id := u.Obj.Value
		if u.Obj.Type == "CustomFieldsManager" {
			w.applyFields(u.ChangeSet)
			continue
		}
		if u.Obj.Type == "EventHistoryCollector" {
			w.announce(u.Obj)
			continue
		}
		switch u.Kind {
		case types.ObjectUpdateKindLeave:
			if o := w.objs[id]; o != nil {
				delete(w.objs, id)
				delete(w.dirty, id)
				w.gone[id] = o.kind
				w.markDirty("")
			}
			continue
		case types.ObjectUpdateKindEnter:
			delete(w.gone, id) // left and came back within one debounce
		}
		o := w.objs[id]
		if o == nil {
			o = &invObject{ref: u.Obj, kind: kindOf(u.Obj.Type), props: map[string]any{}}
			if o.kind == "" {
				continue
			}
			w.objs[id] = o
		}
		for _, c := range u.ChangeSet {
			switch c.Op {
			case types.PropertyChangeOpRemove, types.PropertyChangeOpIndirectRemove:
				delete(o.props, c.Name)
			default:
				o.props[c.Name] = c.Val
			}
		}
		// Properties that could not be read are dropped, not guessed.
		for _, m := range u.MissingSet {
			delete(o.props, m.Path)
		}
		w.markDirty(id)
		if o.kind == "host" && hasChange(u.ChangeSet, "parent") {
			w.markVMsOnHost(id) // their cluster_id follows the host
		}
		if u.Kind == types.ObjectUpdateKindModify && isContainer(o.kind) &&
			(hasChange(u.ChangeSet, "name") || hasChange(u.ChangeSet, "parent") || hasChange(u.ChangeSet, "parentVApp")) {
			w.markDescendants(id) // a renamed or moved container changes their paths
		}
	}
}

func hasChange(cs []types.PropertyChange, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (w *Inventory) markDirty(id string) {
	if w.firstDirty.IsZero() {
		w.firstDirty = time.Now()
	}
	if id != "" {
		w.dirty[id] = true
	}
}

// isContainer reports whether objects of kind can have others below them
// in the inventory path.
func isContainer(kind string) bool {
	switch kind {
	case "folder", "datacenter", "cluster", "computeresource", "resourcepool":
		return true
	}
	return false
}

// markDescendants marks every object below id (by parent chain) dirty.
// Renames and moves of folders, datacenters, clusters and pools are rare,
// so a walk over all objects is fine.
func (w *Inventory) markDescendants(id string) {
	for oid, o := range w.objs {
		cur := w.objs[o.parentID()]
		for depth := 0; cur != nil && depth < 64; depth++ {
			if cur.ref.Value == id {
				w.dirty[oid] = true
				break
			}
			cur = w.objs[cur.parentID()]
		}
	}
}

func (w *Inventory) markVMsOnHost(host string) {
	for id, o := range w.objs {
		if o.kind == "vm" && o.ref1("runtime.host") == host {
			w.dirty[id] = true
		}
	}
}

func (w *Inventory) applyFields(cs []types.PropertyChange) {
	for _, c := range cs {
		if c.Name != "field" {
			continue
		}
		w.fields = map[int32]string{}
		if a, ok := c.Val.(types.ArrayOfCustomFieldDef); ok {
			for _, f := range a.CustomFieldDef {
				w.fields[f.Key] = f.Name
			}
		}
		for id, o := range w.objs {
			if _, ok := o.props["customValue"]; ok {
				w.markDirty(id)
			}
		}
	}
}

func (w *Inventory) sendFull(ctx context.Context) error {
	w.mu.RLock()
	inv := &protocol.Inventory{Source: w.sess.Source(), Full: true, At: nowMs(),
		Objects: make([]protocol.InventoryObject, 0, len(w.objs))}
	for _, o := range w.objs {
		inv.Objects = append(inv.Objects, buildObject(inv.Source, o, w.objs, w.fields))
	}
	w.mu.RUnlock()
	sort.Slice(inv.Objects, func(i, j int) bool { return inv.Objects[i].ID < inv.Objects[j].ID })
	if err := w.sink.Inventory(ctx, inv); err != nil {
		return err
	}
	w.fullSent = true
	w.dirty, w.gone, w.firstDirty = map[string]bool{}, map[string]string{}, time.Time{}
	w.log.Info("inventory: full snapshot sent", "objects", len(inv.Objects))
	return nil
}

func (w *Inventory) sendDelta(ctx context.Context) error {
	src := w.sess.Source()
	inv := &protocol.Inventory{Source: src, At: nowMs()}
	w.mu.RLock()
	for id := range w.dirty {
		if o := w.objs[id]; o != nil {
			inv.Objects = append(inv.Objects, buildObject(src, o, w.objs, w.fields))
		}
	}
	w.mu.RUnlock()
	for id, kind := range w.gone {
		inv.Objects = append(inv.Objects, protocol.InventoryObject{Source: src, Kind: kind, ID: id, Deleted: true})
	}
	sort.Slice(inv.Objects, func(i, j int) bool { return inv.Objects[i].ID < inv.Objects[j].ID })
	if err := w.sink.Inventory(ctx, inv); err != nil {
		return err
	}
	w.dirty, w.gone, w.firstDirty = map[string]bool{}, map[string]string{}, time.Time{}
	return nil
}
