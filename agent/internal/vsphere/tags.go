package vsphere

import (
	"context"
	"slices"
	"time"

	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/mo"
)

// tagBatch bounds the objects per ListAttachedTagsOnObjects call.
const tagBatch = 500

// refreshTags re-reads all tag attachments over vAPI and marks the objects
// whose tags changed. An endpoint without vAPI (ESXi, or the service down)
// is logged once at warning level and otherwise tolerated: objects then
// carry no "tags" property.
func (w *Inventory) refreshTags(ctx context.Context, conn *Conn) {
	w.tagsLast = time.Now()
	attached, err := w.readTags(ctx, conn)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if !w.tagsWarned {
			w.log.Warn("inventory: vsphere tags unavailable, carrying on without them", "err", err)
			w.tagsWarned = true
		} else {
			w.log.Debug("inventory: vsphere tags still unavailable", "err", err)
		}
		return
	}
	if w.tagsWarned {
		w.log.Info("inventory: vsphere tags available again")
		w.tagsWarned = false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, o := range w.objs {
		if !taggable(o.kind) {
			continue
		}
		t := attached[id]
		if t == nil {
			t = []string{}
		}
		if o.tags == nil || !slices.Equal(o.tags, t) {
			o.tags = t
			if w.fullSent {
				w.markDirty(id)
			}
		}
	}
}

func taggable(kind string) bool {
	switch kind {
	case "vm", "host", "cluster", "datastore", "resourcepool", "datacenter":
		return true
	}
	return false
}

// readTags returns object id → sorted "category/name" tags.
func (w *Inventory) readTags(ctx context.Context, conn *Conn) (map[string][]string, error) {
	rc, err := conn.REST(ctx)
	if err != nil {
		return nil, err
	}
	m := tags.NewManager(rc)
	cats, err := m.GetCategories(ctx)
	if err != nil {
		return nil, err
	}
	catName := make(map[string]string, len(cats))
	for _, c := range cats {
		catName[c.ID] = c.Name
	}
	all, err := m.GetTags(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(all))
	for _, t := range all {
		names[t.ID] = catName[t.CategoryID] + "/" + t.Name
	}

	w.mu.RLock()
	refs := make([]mo.Reference, 0, len(w.objs))
	for _, o := range w.objs {
		if taggable(o.kind) {
			refs = append(refs, o.ref)
		}
	}
	w.mu.RUnlock()

	out := map[string][]string{}
	if len(names) == 0 {
		return out, nil // no tags defined: nothing can be attached
	}
	for start := 0; start < len(refs); start += tagBatch {
		chunk := refs[start:min(start+tagBatch, len(refs))]
		res, err := m.ListAttachedTagsOnObjects(ctx, chunk)
		if err != nil {
			return nil, err
		}
		for _, a := range res {
			out[a.ObjectID.Reference().Value] = sortedTags(a.TagIDs, names)
		}
	}
	return out, nil
}
