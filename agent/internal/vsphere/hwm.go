package vsphere

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// High-water marks record, per (entity, collection interval), how far the
// entity's samples are accounted for: the newest sample timestamp the Sink
// accepted, or the end of a stretch the Sink accepted a gap record for. They
// make perf collection resumable: after an agent restart the next query
// starts just after the mark, so the gap is re-read from vCenter (its
// realtime store for the last hour, its historical intervals before that;
// see retention.go) with neither duplicates nor holes, and what vCenter no
// longer has is recorded as lost.
//
// All marks of one source are persisted under one MetaStore key,
// "vsphere/hwm/<source>", in a compact binary form:
//
//	byte     format version (1)
//	uvarint  number of entries
//	entries, sorted by entity id then interval:
//	  uvarint  len(entity id), then the id bytes
//	  uvarint  interval in seconds
//	  uvarint  timestamp, Unix ms

const hwmFormat = 1

type hwmKey struct {
	entity   string
	interval int32
}

// hwmStore is safe for concurrent use.
type hwmStore struct {
	mu    sync.Mutex
	marks map[hwmKey]int64
	dirty bool
}

func newHWM() *hwmStore { return &hwmStore{marks: map[hwmKey]int64{}} }

func hwmMetaKey(source string) string { return "vsphere/hwm/" + source }

// get returns the mark and whether there is one.
func (h *hwmStore) get(entity string, interval int32) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ts, ok := h.marks[hwmKey{entity, interval}]
	return ts, ok
}

// advance raises the mark; it never lowers it.
func (h *hwmStore) advance(entity string, interval int32, ts int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := hwmKey{entity, interval}
	if ts > h.marks[k] {
		h.marks[k] = ts
		h.dirty = true
	}
}

// prune drops the marks of interval older than before, so that entities
// deleted long ago do not pile up. Each loop prunes only its own interval's
// marks, after it planned with them.
func (h *hwmStore) prune(interval int32, before time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, ts := range h.marks {
		if k.interval == interval && ts < before.UnixMilli() {
			delete(h.marks, k)
			h.dirty = true
		}
	}
}

// newest returns the newest mark of interval, 0 if there is none: about
// when the loop last collected, before an outage.
func (h *hwmStore) newest(interval int32) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for k, ts := range h.marks {
		if k.interval == interval && ts > n {
			n = ts
		}
	}
	return n
}

// takeDirty reports whether marks changed since the last call and clears
// the flag.
func (h *hwmStore) takeDirty() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.dirty
	h.dirty = false
	return d
}

func (h *hwmStore) encode() []byte {
	h.mu.Lock()
	keys := make([]hwmKey, 0, len(h.marks))
	for k := range h.marks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].entity != keys[j].entity {
			return keys[i].entity < keys[j].entity
		}
		return keys[i].interval < keys[j].interval
	})
	b := []byte{hwmFormat}
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k.entity)))
		b = append(b, k.entity...)
		b = binary.AppendUvarint(b, uint64(k.interval))
		b = binary.AppendUvarint(b, uint64(h.marks[k]))
	}
	h.mu.Unlock()
	return b
}

var errHWMCorrupt = errors.New("hwm: corrupt encoding")

// decodeHWM parses encode's output defensively.
func decodeHWM(b []byte) (map[hwmKey]int64, error) {
	out := map[hwmKey]int64{}
	if len(b) == 0 {
		return out, nil
	}
	if b[0] != hwmFormat {
		return nil, fmt.Errorf("hwm: unknown format %d", b[0])
	}
	b = b[1:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errHWMCorrupt
		}
		b = b[n:]
		return v, nil
	}
	n, err := uv()
	if err != nil || n > uint64(len(b)) {
		return nil, errHWMCorrupt
	}
	for range n {
		l, err := uv()
		if err != nil || l > uint64(len(b)) || l > 256 {
			return nil, errHWMCorrupt
		}
		id := string(b[:l])
		b = b[l:]
		iv, err := uv()
		if err != nil || iv > 86400 {
			return nil, errHWMCorrupt
		}
		ts, err := uv()
		if err != nil || ts > 1<<62 {
			return nil, errHWMCorrupt
		}
		out[hwmKey{id, int32(iv)}] = int64(ts)
	}
	if len(b) != 0 {
		return nil, errHWMCorrupt
	}
	return out, nil
}

// load replaces the marks with those persisted for source.
func (h *hwmStore) load(meta MetaStore, source string) error {
	b, err := meta.GetMeta(hwmMetaKey(source))
	if err != nil {
		return fmt.Errorf("hwm: read %q: %w", source, err)
	}
	m, err := decodeHWM(b)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.marks = m
	h.dirty = false
	h.mu.Unlock()
	return nil
}
