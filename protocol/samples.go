package protocol

import (
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"unicode/utf8"
)

// MaxValuesPerBatch bounds the decoded size of one samples payload, counted
// in cells: every point of a series counts once for its timestamp and once
// per counter. It caps what a decoder allocates (8 bytes per cell) whatever
// the encoding, whose cheapest cells take less than a byte. Senders split
// larger data (e.g. a long backfill) into several batches.
const MaxValuesPerBatch = 1 << 23

// seriesCells is what one series costs against MaxValuesPerBatch before any
// of its points: the size of a decoded SeriesData plus its bookkeeping, in
// 8-byte cells.
const seriesCells = 18

// SeriesCost is the most one series of points×counters can cost against
// MaxValuesPerBatch when decoded, its key's strings and a schema of its own
// included. A sender that keeps the sum of its series' costs within
// MaxValuesPerBatch never has a batch refused for size.
func SeriesCost(points, counters int) int {
	// values and timestamps, the series itself, up to 4 key strings (2 cells
	// each), its own schema (3) and per counter: schema entry (4) and name
	// and unit strings (2 each).
	return points*(counters+1) + seriesCells + 8 + 3 + counters*8
}

// samplesFormat is the first byte of a samples payload. A new layout gets a
// new value; Version 1 of the protocol knows only this one.
const samplesFormat = 1

// maxStrings bounds the string table of one samples payload.
const maxStrings = 4*MaxSeriesPerBatch + 2*MaxCountersPerSeries

// Column encodings, the first byte of each value column.
const (
	colMissing    = 0 // every value is NaN; nothing follows
	colInt        = 1 // all present, integers: zvarint deltas
	colIntSparse  = 2 // presence bitmap, then zvarint deltas of the present
	colFloat      = 3 // all present: XOR-with-previous float64s
	colFloatSpare = 4 // presence bitmap, then XOR floats of the present
)

// Count returns the number of samples in s: its non-NaN values.
func (s *Samples) Count() int {
	n := 0
	for i := range s.Series {
		for _, col := range s.Series[i].Values {
			for _, v := range col {
				if v == v {
					n++
				}
			}
		}
	}
	return n
}

// EncodeSamples encodes s into an uncompressed samples payload. See
// AppendSamples.
func EncodeSamples(s *Samples) ([]byte, error) {
	return AppendSamples(nil, s)
}

// AppendSamples appends the uncompressed samples payload of s to dst. It
// validates s exactly as DecodeSamples validates the wire, so that what it
// writes the receiver accepts.
//
// Layout (varints are encoding/binary's, "zvarint" the zig-zag signed form):
//
//	format    u8 = 1
//	nstrings  uvarint, then nstrings × (len uvarint ≤ MaxStringLen, UTF-8 bytes)
//	nschemas  uvarint, then nschemas × schema:
//	            ncounters uvarint ≤ MaxCountersPerSeries,
//	            ncounters × (name string ref uvarint, unit string ref uvarint)
//	nseries   uvarint ≤ MaxSeriesPerBatch
//	keyslen   uvarint, the byte length of the keys section
//	timeslen  uvarint, the byte length of the times section
//	keys      nseries × (source, kind, entity ID, instance, schema: each a
//	            zvarint delta from the previous series' ref, the first from 0;
//	            npoints uvarint ≤ MaxPointsPerSeries)
//	times     for each series with npoints > 0: npoints zvarints, the
//	            first timestamp as a delta from the previous series' first
//	            timestamp (from 0 for the first), then delta-of-deltas (the
//	            first delta against 0); every delta must be > 0
//	values    the rest: for each series, for each counter, a column:
//	            enc u8, then
//	            0 (missing): nothing, every value is NaN
//	            1 (int): npoints zvarint deltas of int64 values (from 0)
//	            2 (int, sparse): presence bitmap (ceil(npoints/8) bytes, bit i
//	              = 1<<(i%8) of byte i/8 set if value i is present), then a
//	              zvarint delta per present value
//	            3 (float): per value, the XOR of its IEEE-754 bits with the
//	              previous value's (0 before the first): a byte
//	              lead<<4|n, lead the zero bytes on the left, n in 0..8 the
//	              bytes that follow, big-endian; n = 0 means XOR 0
//	            4 (float, sparse): presence bitmap, then 3's encoding of the
//	              present values
//
// Keys, times and values go in separate sections because zstd compresses
// like with like far better than interleaved records.
func AppendSamples(dst []byte, s *Samples) ([]byte, error) {
	e := encPool.Get().(*samplesEncoder)
	defer e.release()
	return e.encode(dst, s)
}

// samplesEncoder holds the scratch state of one encoding, recycled through
// encPool so that steady-state encoding allocates only its output.
type samplesEncoder struct {
	strIdx    map[string]uint32
	strs      []string
	schemaIdx map[string]uint32
	schemas   []byte // schemas section body
	nschemas  int
	keyBuf    []byte
	keys      []byte
	times     []byte
	vals      []byte
	present   []bool
}

var encPool = sync.Pool{New: func() any {
	return &samplesEncoder{strIdx: make(map[string]uint32), schemaIdx: make(map[string]uint32)}
}}

// maxPooledScratch is the largest section buffer kept across encodings.
const maxPooledScratch = 16 << 20

func (e *samplesEncoder) release() {
	if cap(e.vals) > maxPooledScratch || len(e.strs) > 1<<16 {
		return // let an outsized encoder go
	}
	clear(e.strIdx)
	clear(e.schemaIdx)
	clear(e.strs)
	e.strs = e.strs[:0]
	e.schemas = e.schemas[:0]
	e.nschemas = 0
	e.keys, e.times, e.vals = e.keys[:0], e.times[:0], e.vals[:0]
	encPool.Put(e)
}

// str interns s and returns its string table index.
func (e *samplesEncoder) str(s string) uint32 {
	if i, ok := e.strIdx[s]; ok {
		return i
	}
	i := uint32(len(e.strs))
	e.strIdx[s] = i
	e.strs = append(e.strs, s)
	return i
}

// checkString validates one string of series si.
func checkString(si int, field, s string, required bool) error {
	if required && s == "" {
		return malformedf("samples: series %d: empty %s", si, field)
	}
	if len(s) > MaxStringLen {
		return errorf(ErrCodeTooLarge, "samples: series %d: %s length %d exceeds %d", si, field, len(s), MaxStringLen)
	}
	if !utf8.ValidString(s) {
		return malformedf("samples: series %d: %s is not valid UTF-8", si, field)
	}
	return nil
}

// schema returns the schema index of counters, adding and validating a new
// schema on first sight.
func (e *samplesEncoder) schema(si int, counters []Counter) (uint32, error) {
	kb := e.keyBuf[:0]
	for _, c := range counters {
		kb = binary.AppendUvarint(kb, uint64(e.str(c.Name)))
		kb = binary.AppendUvarint(kb, uint64(e.str(c.Unit)))
	}
	e.keyBuf = kb
	if i, ok := e.schemaIdx[string(kb)]; ok {
		return i, nil
	}
	for ci, c := range counters {
		if err := checkString(si, "counter name", c.Name, true); err != nil {
			return 0, err
		}
		if err := checkString(si, "counter unit", c.Unit, false); err != nil {
			return 0, err
		}
		for _, d := range counters[:ci] {
			if d.Name == c.Name {
				return 0, malformedf("samples: series %d: duplicate counter %q", si, c.Name)
			}
		}
	}
	i := uint32(e.nschemas)
	e.nschemas++
	e.schemaIdx[string(kb)] = i
	e.schemas = binary.AppendUvarint(e.schemas, uint64(len(counters)))
	e.schemas = append(e.schemas, kb...)
	return i, nil
}

func (e *samplesEncoder) encode(dst []byte, s *Samples) ([]byte, error) {
	if len(s.Series) > MaxSeriesPerBatch {
		return dst, errorf(ErrCodeTooLarge, "samples: series count %d exceeds %d", len(s.Series), MaxSeriesPerBatch)
	}
	var (
		prevRefs    [5]uint32
		prevT0      int64
		prevSchema  []Counter
		schemaRef   uint32
		cells       int
		haveCounter bool
	)
	for si := range s.Series {
		sd := &s.Series[si]
		k := &sd.Key
		if err := checkString(si, "source", k.Source, true); err != nil {
			return dst, err
		}
		if err := checkString(si, "entity kind", k.EntityKind, true); err != nil {
			return dst, err
		}
		if err := checkString(si, "entity ID", k.EntityID, true); err != nil {
			return dst, err
		}
		if err := checkString(si, "instance", k.Instance, false); err != nil {
			return dst, err
		}
		nc, n := len(k.Counters), len(sd.Timestamps)
		if nc > MaxCountersPerSeries {
			return dst, errorf(ErrCodeTooLarge, "samples: series %d: counter count %d exceeds %d", si, nc, MaxCountersPerSeries)
		}
		if n > MaxPointsPerSeries {
			return dst, errorf(ErrCodeTooLarge, "samples: series %d: point count %d exceeds %d", si, n, MaxPointsPerSeries)
		}
		if len(sd.Values) != nc {
			return dst, malformedf("samples: series %d: %d value columns for %d counters", si, len(sd.Values), nc)
		}
		for c, col := range sd.Values {
			if len(col) != n {
				return dst, malformedf("samples: series %d: counter %d has %d values for %d timestamps", si, c, len(col), n)
			}
		}
		cells += SeriesCost(n, nc)
		if cells > MaxValuesPerBatch {
			return dst, errorf(ErrCodeTooLarge, "samples: series %d: batch exceeds %d cells (see SeriesCost)", si, MaxValuesPerBatch)
		}
		if !haveCounter || !sameCounters(prevSchema, k.Counters) {
			ref, err := e.schema(si, k.Counters)
			if err != nil {
				return dst, err
			}
			schemaRef, prevSchema, haveCounter = ref, k.Counters, true
		}

		// Keys.
		refs := [5]uint32{e.str(k.Source), e.str(k.EntityKind), e.str(k.EntityID), e.str(k.Instance), schemaRef}
		for i, r := range refs {
			e.keys = binary.AppendUvarint(e.keys, zigzag(int64(r)-int64(prevRefs[i])))
		}
		prevRefs = refs
		e.keys = binary.AppendUvarint(e.keys, uint64(n))
		if n == 0 {
			continue
		}

		// Times: wrapping arithmetic makes every int64 pair encodable and
		// the decoder's wrapping inverse exact.
		ts := sd.Timestamps
		e.times = binary.AppendUvarint(e.times, zigzag(int64(uint64(ts[0])-uint64(prevT0))))
		prevT0 = ts[0]
		var prevDelta uint64
		for i := 1; i < n; i++ {
			if ts[i] <= ts[i-1] {
				return dst, malformedf("samples: series %d: timestamp %d (%d) not after %d", si, i, ts[i], ts[i-1])
			}
			d := uint64(ts[i]) - uint64(ts[i-1])
			e.times = binary.AppendUvarint(e.times, zigzag(int64(d-prevDelta)))
			prevDelta = d
		}

		// Values.
		for _, col := range sd.Values {
			e.vals = e.appendColumn(e.vals, col)
		}
	}
	if len(e.strs) > maxStrings {
		return dst, errorf(ErrCodeTooLarge, "samples: %d distinct strings exceed %d", len(e.strs), maxStrings)
	}

	start := len(dst)
	size := 1 + 4*binary.MaxVarintLen64 + len(e.schemas) + len(e.keys) + len(e.times) + len(e.vals)
	for _, str := range e.strs {
		size += binary.MaxVarintLen16 + len(str)
	}
	if size > MaxDecodedPayload+64 {
		return dst, errorf(ErrCodeTooLarge, "samples: encoded size %d exceeds %d", size, MaxDecodedPayload)
	}
	dst = grow(dst, size)
	dst = append(dst, samplesFormat)
	dst = binary.AppendUvarint(dst, uint64(len(e.strs)))
	for _, str := range e.strs {
		dst = binary.AppendUvarint(dst, uint64(len(str)))
		dst = append(dst, str...)
	}
	dst = binary.AppendUvarint(dst, uint64(e.nschemas))
	dst = append(dst, e.schemas...)
	dst = binary.AppendUvarint(dst, uint64(len(s.Series)))
	dst = binary.AppendUvarint(dst, uint64(len(e.keys)))
	dst = binary.AppendUvarint(dst, uint64(len(e.times)))
	dst = append(dst, e.keys...)
	dst = append(dst, e.times...)
	dst = append(dst, e.vals...)
	if len(dst)-start > MaxDecodedPayload {
		return dst[:start], errorf(ErrCodeTooLarge, "samples: encoded size %d exceeds %d", len(dst)-start, MaxDecodedPayload)
	}
	return dst, nil
}

// grow makes room for n more bytes in b.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

func sameCounters(a, b []Counter) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// isInt reports whether v is an integer that int64 holds exactly, so that
// float64(int64(v)) gives back v's very bits (which excludes -0).
func isInt(v float64) bool {
	return v >= -(1<<63) && v < 1<<63 && v == math.Trunc(v) && (v != 0 || !math.Signbit(v))
}

// appendColumn appends one value column.
func (e *samplesEncoder) appendColumn(b []byte, col []float64) []byte {
	present, ints := 0, true
	for _, v := range col {
		if v != v {
			continue
		}
		present++
		if ints && !isInt(v) {
			ints = false
		}
	}
	n := len(col)
	switch {
	case present == 0:
		return append(b, colMissing)
	case present == n && ints:
		b = append(b, colInt)
	case present == n:
		b = append(b, colFloat)
	case ints:
		b = appendBitmap(append(b, colIntSparse), col)
	default:
		b = appendBitmap(append(b, colFloatSpare), col)
	}
	if ints {
		var prev int64
		for _, v := range col {
			if v != v {
				continue
			}
			x := int64(v)
			b = binary.AppendUvarint(b, zigzag(int64(uint64(x)-uint64(prev))))
			prev = x
		}
		return b
	}
	var prev uint64
	for _, v := range col {
		if v != v {
			continue
		}
		bits := math.Float64bits(v)
		b = appendXOR(b, bits^prev)
		prev = bits
	}
	return b
}

// appendBitmap appends the presence bitmap of col.
func appendBitmap(b []byte, col []float64) []byte {
	for i := 0; i < len(col); i += 8 {
		var m byte
		for j := i; j < len(col) && j < i+8; j++ {
			if col[j] == col[j] {
				m |= 1 << (j - i)
			}
		}
		b = append(b, m)
	}
	return b
}

// appendXOR appends one XOR-encoded float: header lead<<4|n, then the n
// significant bytes.
func appendXOR(b []byte, x uint64) []byte {
	if x == 0 {
		return append(b, 0)
	}
	lead := bits.LeadingZeros64(x) / 8
	trail := bits.TrailingZeros64(x) / 8
	n := 8 - lead - trail
	b = append(b, byte(lead<<4|n))
	x >>= 8 * trail
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(x>>(8*i)))
	}
	return b
}

// DecodeSamples decodes an uncompressed samples payload (see AppendSamples
// for its layout), enforcing every bound before allocating for it.
//
// The result shares memory to keep decoding cheap: all timestamps live in
// one array, all values in another, and series with the same counter list
// share one Counters slice. Treat Counters as read-only.
func DecodeSamples(p []byte) (*Samples, error) {
	if len(p) > MaxDecodedPayload {
		return nil, errorf(ErrCodeTooLarge, "samples: payload of %d bytes exceeds %d", len(p), MaxDecodedPayload)
	}
	r := reader{p: p, what: "samples", series: -1}
	if f := r.byte("format"); r.err == nil && f != samplesFormat {
		return nil, errorf(ErrCodeUnsupported, "samples: unknown format %d", f)
	}

	// String table: one allocation for all strings.
	nstr := r.count("string count", maxStrings, 1)
	strStart := r.off
	for i := 0; i < nstr && r.err == nil; i++ {
		l := r.count("string length", MaxStringLen, 1)
		r.bytes("string", l)
	}
	if r.err != nil {
		return nil, r.err
	}
	all := string(p[strStart:r.off])
	strs := make([]string, nstr)
	sr := reader{p: p[strStart:r.off], what: "samples", series: -1}
	for i := range strs {
		l := int(sr.uvarint("string length"))
		s := all[sr.off : sr.off+l]
		sr.off += l
		if !utf8.ValidString(s) {
			return nil, malformedf("samples: string %d is not valid UTF-8", i)
		}
		strs[i] = s
	}

	// Schemas: each a shared, capacity-capped Counters slice.
	nsch := r.count("schema count", MaxSeriesPerBatch, 1)
	schemas := make([][]Counter, nsch)
	var counterCells int
	for i := range schemas {
		nc := r.count("counter count", MaxCountersPerSeries, 2)
		if r.err != nil {
			return nil, r.err
		}
		counterCells += nc
		if counterCells > MaxValuesPerBatch {
			return nil, errorf(ErrCodeTooLarge, "samples: schemas hold more than %d counters", MaxValuesPerBatch)
		}
		cs := make([]Counter, nc)
		for c := range cs {
			nameRef := r.uvarint("counter name ref")
			unitRef := r.uvarint("counter unit ref")
			if r.err != nil {
				return nil, r.err
			}
			if nameRef >= uint64(nstr) || unitRef >= uint64(nstr) {
				return nil, malformedf("samples: schema %d: counter %d: string ref out of range (%d strings)", i, c, nstr)
			}
			cs[c] = Counter{Name: strs[nameRef], Unit: strs[unitRef]}
			if cs[c].Name == "" {
				return nil, malformedf("samples: schema %d: counter %d: empty name", i, c)
			}
			for _, d := range cs[:c] {
				if d.Name == cs[c].Name {
					return nil, malformedf("samples: schema %d: duplicate counter %q", i, d.Name)
				}
			}
		}
		schemas[i] = cs[:nc:nc]
	}

	nser := r.count("series count", MaxSeriesPerBatch, 1)
	keysLen := r.count("keys section length", MaxDecodedPayload, 1)
	timesLen := r.count("times section length", MaxDecodedPayload, 1)
	if r.err != nil {
		return nil, r.err
	}
	if keysLen+timesLen > r.remaining() {
		return nil, malformedf("samples: sections of %d+%d bytes exceed the remaining %d", keysLen, timesLen, r.remaining())
	}
	kr := reader{p: r.bytes("keys", keysLen), what: "samples", series: -1}
	tr := reader{p: r.bytes("times", timesLen), what: "samples", series: -1}
	vr := reader{p: p[r.off:], what: "samples", series: -1}

	// What the tables cost in memory counts against the same budget as the
	// values (in 8-byte cells), so that a payload of a few bytes per series
	// cannot decode into gigabytes of empty series.
	overhead := nser*seriesCells + nsch*3 + counterCells*4 + nstr*2
	if overhead > MaxValuesPerBatch {
		return nil, errorf(ErrCodeTooLarge, "samples: %d series, %d schemas and %d strings exceed the batch budget of %d cells", nser, nsch, nstr, MaxValuesPerBatch)
	}

	// Pass 1 over the keys: resolve refs and size the arrays, so that the
	// cell budget is checked before anything big is allocated.
	out := &Samples{Series: make([]SeriesData, nser)}
	npts := make([]int32, nser)
	var refs [5]uint64
	points, cells, columns := 0, overhead, 0
	for si := range out.Series {
		kr.series = si
		for i := range refs {
			refs[i] += uint64(kr.varint("key ref"))
		}
		n := kr.count("point count", MaxPointsPerSeries, 0)
		if kr.err != nil {
			return nil, kr.err
		}
		for i := 0; i < 4; i++ {
			if refs[i] >= uint64(nstr) {
				return nil, malformedf("samples: series %d: string ref %d out of range (%d strings)", si, int64(refs[i]), nstr)
			}
		}
		if refs[4] >= uint64(nsch) {
			return nil, malformedf("samples: series %d: schema ref %d out of range (%d schemas)", si, int64(refs[4]), nsch)
		}
		k := SeriesKey{Source: strs[refs[0]], EntityKind: strs[refs[1]], EntityID: strs[refs[2]], Instance: strs[refs[3]], Counters: schemas[refs[4]]}
		switch {
		case k.Source == "":
			return nil, malformedf("samples: series %d: empty source", si)
		case k.EntityKind == "":
			return nil, malformedf("samples: series %d: empty entity kind", si)
		case k.EntityID == "":
			return nil, malformedf("samples: series %d: empty entity ID", si)
		}
		nc := len(k.Counters)
		cells += n * (nc + 1)
		if cells > MaxValuesPerBatch {
			return nil, errorf(ErrCodeTooLarge, "samples: series %d: batch exceeds %d cells (points × (counters+1))", si, MaxValuesPerBatch)
		}
		points += n
		columns += nc
		out.Series[si].Key = k
		npts[si] = int32(n)
	}
	if kr.remaining() != 0 {
		return nil, malformedf("samples: %d trailing bytes in keys section", kr.remaining())
	}

	// Pass 2: timestamps and values, into three shared arrays.
	tsAll := make([]int64, points)
	valAll := make([]float64, cells-points)
	colAll := make([][]float64, columns)
	var prevT0 int64
	for si := range out.Series {
		sd := &out.Series[si]
		n := int(npts[si])
		nc := len(sd.Key.Counters)
		ts := tsAll[:n:n]
		tsAll = tsAll[n:]
		cols := colAll[:nc:nc]
		colAll = colAll[nc:]
		sd.Timestamps, sd.Values = ts, cols
		for c := range cols {
			cols[c] = valAll[:n:n]
			valAll = valAll[n:]
		}
		if n == 0 {
			continue
		}
		tr.series, vr.series = si, si
		t := int64(uint64(prevT0) + uint64(tr.varint("first timestamp")))
		prevT0 = t
		ts[0] = t
		var delta uint64
		for i := 1; i < n; i++ {
			delta += uint64(tr.varint("timestamp delta"))
			next := int64(uint64(t) + delta)
			if tr.err == nil && next <= t {
				tr.fail(ErrCodeMalformed, "timestamp %d not after %d", i, t)
			}
			t = next
			ts[i] = t
		}
		if tr.err != nil {
			return nil, tr.err
		}
		for c := range cols {
			vr.column(c, cols[c])
		}
		if vr.err != nil {
			return nil, vr.err
		}
	}
	if tr.remaining() != 0 {
		return nil, malformedf("samples: %d trailing bytes in times section", tr.remaining())
	}
	if vr.remaining() != 0 {
		return nil, malformedf("samples: %d trailing bytes in values section", vr.remaining())
	}
	return out, nil
}

// column decodes one value column into col, whose length is the series'
// point count.
func (r *reader) column(c int, col []float64) {
	enc := r.byte("column encoding")
	if r.err != nil {
		return
	}
	n := len(col)
	var bitmap []byte
	switch enc {
	case colMissing:
		for i := range col {
			col[i] = math.NaN()
		}
		return
	case colInt, colFloat:
	case colIntSparse, colFloatSpare:
		bitmap = r.bytes("presence bitmap", (n+7)/8)
		if r.err != nil {
			return
		}
	default:
		r.fail(ErrCodeUnsupported, "counter %d: unknown column encoding %d", c, enc)
		return
	}
	ints := enc == colInt || enc == colIntSparse
	var prev uint64
	for i := range col {
		if bitmap != nil && bitmap[i>>3]&(1<<(i&7)) == 0 {
			col[i] = math.NaN()
			continue
		}
		if ints {
			prev += uint64(r.varint("value"))
			col[i] = float64(int64(prev))
			continue
		}
		if r.off >= len(r.p) {
			r.fail(ErrCodeMalformed, "counter %d: value %d: truncated", c, i)
			return
		}
		h := r.p[r.off]
		r.off++
		if h != 0 {
			lead, m := int(h>>4), int(h&15)
			if m == 0 || lead+m > 8 || m > len(r.p)-r.off {
				r.fail(ErrCodeMalformed, "counter %d: value %d: bad float header 0x%02x", c, i, h)
				return
			}
			var x uint64
			for _, b := range r.p[r.off : r.off+m] {
				x = x<<8 | uint64(b)
			}
			r.off += m
			prev ^= x << (8 * (8 - lead - m))
		}
		col[i] = math.Float64frombits(prev)
	}
}
