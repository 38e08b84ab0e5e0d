package realtime

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/protocol"
)

// The relay's notification format. A batch travels to the other replicas
// as the samples themselves, so that they forward it without reading the
// database, cut into notifications that each fit PostgreSQL's payload
// limit (NOTIFY payloads must be shorter than 8000 bytes) and each decode
// on their own: a notification lost or reordered costs only its own
// samples. The payload is the base64 (standard alphabet, padded) of:
//
//	version    byte (notifyVersion)
//	origin     16 bytes: the ID of the hub that ingested the batch
//	committed  varint: Unix microseconds of its publication
//	ndict      uvarint, then ndict strings (uvarint length, bytes): every
//	           string below is an index into this dictionary
//	site       uvarint index
//	agent      uvarint index
//	nseries    uvarint, then nseries pieces:
//	  source, kind, entity, instance   uvarint indexes
//	  ncounters  uvarint, then per counter: name, unit (uvarint indexes)
//	  npoints    uvarint
//	  times      varint Unix ms of the first point, then varint deltas
//	  values     ncounters × npoints float32, little endian, counter-major
//	             (NaN: no sample)
//
// A piece is a series, or part of one (some of its points, some of its
// counters) when a whole series does not fit. Values travel as float32,
// the precision PostgreSQL stores them in, so that every replica delivers
// the same numbers.
const notifyVersion = 1

// maxNotifyRaw bounds a notification before base64: 4⌈5900/3⌉ = 7868
// characters, under PostgreSQL's limit of 7999.
const maxNotifyRaw = 5900

// chunk builds one notification.
type chunk struct {
	dict      []string
	idx       map[string]uint64
	dictBytes int
	body      []byte
	pieces    int
	site      uint64
	agent     uint64
	limit     int
}

func newChunk(site, agent string, limit int) *chunk {
	c := &chunk{idx: map[string]uint64{}, limit: limit}
	c.site = c.str(site)
	c.agent = c.str(agent)
	return c
}

// str returns the dictionary index of s, adding it.
func (c *chunk) str(s string) uint64 {
	if i, ok := c.idx[s]; ok {
		return i
	}
	i := uint64(len(c.dict))
	c.dict = append(c.dict, s)
	c.idx[s] = i
	c.dictBytes += uvarintLen(uint64(len(s))) + len(s)
	return i
}

// size is the encoded size of the chunk as it stands.
func (c *chunk) size() int {
	return 1 + 16 + binary.MaxVarintLen64 + uvarintLen(uint64(len(c.dict))) + c.dictBytes +
		uvarintLen(c.site) + uvarintLen(c.agent) + uvarintLen(uint64(c.pieces)) + len(c.body)
}

// add appends the piece of sd made of counters [c0, c1) at points [t0, t1),
// or leaves the chunk as it was and reports false if it would not fit.
func (c *chunk) add(sd *protocol.SeriesData, c0, c1, t0, t1 int) bool {
	nd, db, nb := len(c.dict), c.dictBytes, len(c.body)
	k := &sd.Key
	b := c.body
	for _, s := range []string{k.Source, k.EntityKind, k.EntityID, k.Instance} {
		b = binary.AppendUvarint(b, c.str(s))
	}
	b = binary.AppendUvarint(b, uint64(c1-c0))
	for _, ctr := range k.Counters[c0:c1] {
		b = binary.AppendUvarint(b, c.str(ctr.Name))
		b = binary.AppendUvarint(b, c.str(ctr.Unit))
	}
	b = binary.AppendUvarint(b, uint64(t1-t0))
	prev := int64(0)
	for _, ts := range sd.Timestamps[t0:t1] {
		b = binary.AppendVarint(b, ts-prev)
		prev = ts
	}
	for ci := c0; ci < c1; ci++ {
		col := sd.Values[ci]
		for t := t0; t < t1; t++ {
			v := math.NaN()
			if t < len(col) {
				v = col[t]
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		}
	}
	c.body = b
	c.pieces++
	if c.size() <= c.limit {
		return true
	}
	// Roll back.
	for _, s := range c.dict[nd:] {
		delete(c.idx, s)
	}
	c.dict, c.dictBytes, c.body = c.dict[:nd], db, c.body[:nb]
	c.pieces--
	return false
}

// finish encodes the chunk as a notification payload.
func (c *chunk) finish(origin uuid.UUID, committed time.Time) string {
	out := make([]byte, 0, c.size())
	out = append(out, notifyVersion)
	out = append(out, origin[:]...)
	out = binary.AppendVarint(out, committed.UnixMicro())
	out = binary.AppendUvarint(out, uint64(len(c.dict)))
	for _, s := range c.dict {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	out = binary.AppendUvarint(out, c.site)
	out = binary.AppendUvarint(out, c.agent)
	out = binary.AppendUvarint(out, uint64(c.pieces))
	out = append(out, c.body...)
	return base64.StdEncoding.EncodeToString(out)
}

// encodeBatch cuts b into notification payloads of at most limit bytes
// before base64. skipped counts the values of pieces that cannot fit even
// alone (a single value whose strings exceed the limit): they are not
// relayed.
func encodeBatch(origin uuid.UUID, b *Batch, limit int) (payloads []string, skipped int) {
	c := newChunk(b.Site, b.AgentID, limit)
	flush := func() {
		if c.pieces > 0 {
			payloads = append(payloads, c.finish(origin, b.Committed))
			c = newChunk(b.Site, b.AgentID, limit)
		}
	}
	var add func(sd *protocol.SeriesData, c0, c1, t0, t1 int)
	add = func(sd *protocol.SeriesData, c0, c1, t0, t1 int) {
		if c.add(sd, c0, c1, t0, t1) {
			return
		}
		flush()
		if c.add(sd, c0, c1, t0, t1) {
			return
		}
		switch {
		case t1-t0 > 1:
			m := t0 + (t1-t0)/2
			add(sd, c0, c1, t0, m)
			add(sd, c0, c1, m, t1)
		case c1-c0 > 1:
			m := c0 + (c1-c0)/2
			add(sd, c0, m, t0, t1)
			add(sd, m, c1, t0, t1)
		default:
			skipped++
		}
	}
	for i := range b.Samples.Series {
		sd := &b.Samples.Series[i]
		nc := min(len(sd.Key.Counters), len(sd.Values))
		if nc == 0 || len(sd.Timestamps) == 0 {
			continue
		}
		add(sd, 0, nc, 0, len(sd.Timestamps))
	}
	flush()
	return payloads, skipped
}

// errNotification is the error of a payload that is not a notification of
// this format.
var errNotification = errors.New("realtime: malformed notification")

// decodeNotification decodes one payload. It checks every length against
// what is left of the payload, so no payload can make it allocate more
// than a small multiple of the payload's size.
func decodeNotification(payload string) (origin uuid.UUID, b *Batch, err error) {
	if len(payload) > 8000 {
		return origin, nil, fmt.Errorf("%w: %d bytes", errNotification, len(payload))
	}
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return origin, nil, fmt.Errorf("%w: %w", errNotification, err)
	}
	d := decoder{b: raw}
	if v := d.byte(); v != notifyVersion {
		return origin, nil, fmt.Errorf("%w: version %d", errNotification, v)
	}
	copy(origin[:], d.bytes(16))
	committed := d.varint()
	ndict := d.count(1)
	dict := make([]string, 0, ndict)
	for range ndict {
		dict = append(dict, string(d.bytes(d.count(1))))
	}
	str := func() string {
		i := d.uvarint()
		if d.err == nil && i >= uint64(len(dict)) {
			d.err = errNotification
		}
		if d.err != nil {
			return ""
		}
		return dict[i]
	}
	b = &Batch{Site: str(), AgentID: str(), Origin: origin.String(), Committed: time.UnixMicro(committed), Samples: &protocol.Samples{}}
	npieces := d.count(6)
	b.Samples.Series = make([]protocol.SeriesData, 0, npieces)
	for range npieces {
		var sd protocol.SeriesData
		sd.Key.Source, sd.Key.EntityKind, sd.Key.EntityID, sd.Key.Instance = str(), str(), str(), str()
		nc := d.count(2)
		sd.Key.Counters = make([]protocol.Counter, nc)
		for i := range sd.Key.Counters {
			sd.Key.Counters[i] = protocol.Counter{Name: str(), Unit: str()}
		}
		nt := d.count(1)
		if d.err == nil && nc*nt*4 > len(d.b) {
			d.err = errNotification
		}
		if d.err != nil {
			break
		}
		sd.Timestamps = make([]int64, nt)
		prev := int64(0)
		for i := range sd.Timestamps {
			prev += d.varint()
			sd.Timestamps[i] = prev
		}
		sd.Values = make([][]float64, nc)
		for ci := range sd.Values {
			col := make([]float64, nt)
			for t := range col {
				col[t] = float64(math.Float32frombits(d.uint32()))
			}
			sd.Values[ci] = col
		}
		b.Samples.Series = append(b.Samples.Series, sd)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errNotification, len(d.b))
	}
	if d.err != nil {
		return origin, nil, d.err
	}
	return origin, b, nil
}

// decoder reads a payload; the first error sticks and later reads return
// zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errNotification
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	if p := d.bytes(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items that each take at least minBytes of what
// is left, refusing counts the payload cannot hold.
func (d *decoder) count(minBytes int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)/minBytes) {
		d.fail()
	}
	if d.err != nil {
		return 0
	}
	return int(v)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
