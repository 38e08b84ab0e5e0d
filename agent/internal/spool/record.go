package spool

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmpulse/vmpulse/protocol"
)

// Key layout. Every key starts with a one-byte prefix so that batches, their
// index entries, spool state and component metadata never collide, and
// batch keys carry the sequence number big-endian so that Badger's key order
// is sequence order.
//
//	'b' seq(8)   batch record (see encodeRecord)
//	'i' seq(8)   index entry of the batch with the same seq (see encodeIndex)
//	's' name     spool state: "epoch" and "next" (the next seq), 8 bytes each
//	'm' name     metadata owned by other agent components (GetMeta/SetMeta)
const (
	prefixBatch = 'b'
	prefixIndex = 'i'
	prefixState = 's'
	prefixMeta  = 'm'
)

var (
	keyEpoch = []byte{prefixState, 'e', 'p', 'o', 'c', 'h'}
	keyNext  = []byte{prefixState, 'n', 'e', 'x', 't'}
)

func seqKey(prefix byte, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[1:]) }

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// recordVersion is the first byte of every batch record. Bump it when the
// layout changes, and keep decoding the old layouts: a spool outlives the
// binary that wrote it.
const recordVersion = 1

// headerLen is the size of a batch record's header.
const headerLen = 19

// encodeRecord lays out one batch as stored under its 'b' key. Epoch and Seq
// are not stored: the seq is the key and the epoch belongs to the spool.
//
//	offset size field
//	0      1    record version (1)
//	1      1    kind (protocol.BatchKind)
//	2      1    codec (protocol.Codec)
//	3      8    first data timestamp, Unix ms, int64 big-endian
//	11     8    last data timestamp, Unix ms, int64 big-endian
//	19     n    payload, as given to Append
func encodeRecord(b *protocol.Batch) []byte {
	r := make([]byte, headerLen, headerLen+len(b.Payload))
	r[0] = recordVersion
	r[1] = byte(b.Kind)
	r[2] = byte(b.Codec)
	binary.BigEndian.PutUint64(r[3:], uint64(b.First))
	binary.BigEndian.PutUint64(r[11:], uint64(b.Last))
	return append(r, b.Payload...)
}

// decodeRecord is the inverse of encodeRecord. The returned batch aliases r.
func decodeRecord(r []byte, epoch, seq uint64) (*protocol.Batch, error) {
	if len(r) < headerLen {
		return nil, fmt.Errorf("spool: record %d: short record of %d bytes", seq, len(r))
	}
	if r[0] != recordVersion {
		return nil, fmt.Errorf("spool: record %d: unknown record version %d", seq, r[0])
	}
	return &protocol.Batch{
		Kind:    protocol.BatchKind(r[1]),
		Epoch:   epoch,
		Seq:     seq,
		First:   int64(binary.BigEndian.Uint64(r[3:])),
		Last:    int64(binary.BigEndian.Uint64(r[11:])),
		Codec:   protocol.Codec(r[2]),
		Payload: r[headerLen:],
	}, nil
}

// indexLen is the size of an index entry.
const indexLen = 25

// entry is what the spool keeps in memory, and under the 'i' key on disk,
// about each stored batch: enough to account for quota, pick batches to drop
// and report Stats without reading payloads.
//
//	offset size field
//	0      1    kind
//	1      8    record size in bytes (header + payload)
//	9      8    first data timestamp, Unix ms
//	17     8    last data timestamp, Unix ms
type entry struct {
	seq         uint64
	kind        protocol.BatchKind
	size        int64
	first, last int64
}

func encodeIndex(e entry) []byte {
	v := make([]byte, indexLen)
	v[0] = byte(e.kind)
	binary.BigEndian.PutUint64(v[1:], uint64(e.size))
	binary.BigEndian.PutUint64(v[9:], uint64(e.first))
	binary.BigEndian.PutUint64(v[17:], uint64(e.last))
	return v
}

func decodeIndex(seq uint64, v []byte) (entry, error) {
	if len(v) != indexLen {
		return entry{}, errors.New("spool: malformed index entry")
	}
	return entry{
		seq:   seq,
		kind:  protocol.BatchKind(v[0]),
		size:  int64(binary.BigEndian.Uint64(v[1:])),
		first: int64(binary.BigEndian.Uint64(v[9:])),
		last:  int64(binary.BigEndian.Uint64(v[17:])),
	}, nil
}
