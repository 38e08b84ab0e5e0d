package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// sameFloat reports whether a and b are bit-identical, or both NaN (missing).
func sameFloat(a, b float64) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

// diffSamples describes the first difference between want and got, or
// returns "" when they are equal (NaN equals NaN, nil equals empty).
func diffSamples(want, got *Samples) string {
	if len(want.Series) != len(got.Series) {
		return fmt.Sprintf("%d series, want %d", len(got.Series), len(want.Series))
	}
	for i := range want.Series {
		w, g := &want.Series[i], &got.Series[i]
		wk, gk := w.Key, g.Key
		if wk.Source != gk.Source || wk.EntityKind != gk.EntityKind || wk.EntityID != gk.EntityID || wk.Instance != gk.Instance {
			return fmt.Sprintf("series %d: key %+v, want %+v", i, gk, wk)
		}
		if len(wk.Counters) != len(gk.Counters) {
			return fmt.Sprintf("series %d: %d counters, want %d", i, len(gk.Counters), len(wk.Counters))
		}
		for c := range wk.Counters {
			if wk.Counters[c] != gk.Counters[c] {
				return fmt.Sprintf("series %d: counter %d = %+v, want %+v", i, c, gk.Counters[c], wk.Counters[c])
			}
		}
		if len(w.Timestamps) != len(g.Timestamps) {
			return fmt.Sprintf("series %d: %d timestamps, want %d", i, len(g.Timestamps), len(w.Timestamps))
		}
		for j := range w.Timestamps {
			if w.Timestamps[j] != g.Timestamps[j] {
				return fmt.Sprintf("series %d: timestamp %d = %d, want %d", i, j, g.Timestamps[j], w.Timestamps[j])
			}
		}
		if len(w.Values) != len(g.Values) {
			return fmt.Sprintf("series %d: %d columns, want %d", i, len(g.Values), len(w.Values))
		}
		for c := range w.Values {
			if len(w.Values[c]) != len(g.Values[c]) {
				return fmt.Sprintf("series %d: column %d has %d values, want %d", i, c, len(g.Values[c]), len(w.Values[c]))
			}
			for j := range w.Values[c] {
				if !sameFloat(w.Values[c][j], g.Values[c][j]) {
					return fmt.Sprintf("series %d: value [%d][%d] = %v (%#x), want %v (%#x)", i, c, j,
						g.Values[c][j], math.Float64bits(g.Values[c][j]), w.Values[c][j], math.Float64bits(w.Values[c][j]))
				}
			}
		}
	}
	return ""
}

// oneSeries builds a single-series Samples with one column per values row.
func oneSeries(ts []int64, cols ...[]float64) *Samples {
	cs := make([]Counter, len(cols))
	for i := range cs {
		cs[i] = Counter{Name: fmt.Sprintf("c%d", i), Unit: "u"}
	}
	return &Samples{Series: []SeriesData{{
		Key:        SeriesKey{Source: "vc1", EntityKind: "vm", EntityID: "vm-42", Counters: cs},
		Timestamps: ts,
		Values:     cols,
	}}}
}

var nan = math.NaN()

func TestSamplesRoundTrip(t *testing.T) {
	negZero := math.Copysign(0, -1)
	tests := []struct {
		name string
		s    *Samples
	}{
		{"empty batch", &Samples{}},
		{"series without points", oneSeries(nil, nil, nil)},
		{"series without counters", oneSeries([]int64{1, 2, 3})},
		{"one point", oneSeries([]int64{1_760_000_000_000}, []float64{4321})},
		{"regular ints", oneSeries([]int64{0, 20000, 40000, 60000}, []float64{1, 2, 3, 4}, []float64{-5, 0, 5, -5})},
		{"irregular timestamps", oneSeries([]int64{-5, 3, 1000, 1001, 1 << 40}, []float64{0, 0, 0, 0, 0})},
		{"extreme timestamps", oneSeries([]int64{math.MinInt64, -1, 0, math.MaxInt64}, []float64{1, 2, 3, 4})},
		{"huge and small ints", oneSeries([]int64{1, 2, 3, 4, 5, 6},
			[]float64{-(1 << 63), 1<<63 - 1024, 1 << 53, -(1 << 53) - 2, 0, 1})},
		{"non-integer floats", oneSeries([]int64{1, 2, 3, 4, 5},
			[]float64{0.1, 12.5, -3.75, 1e300, math.SmallestNonzeroFloat64})},
		{"negative zero", oneSeries([]int64{1, 2}, []float64{negZero, 0})},
		{"infinities", oneSeries([]int64{1, 2, 3}, []float64{math.Inf(1), math.Inf(-1), 7})},
		{"beyond int64", oneSeries([]int64{1, 2}, []float64{1 << 63, -(1 << 64)})},
		{"all missing", oneSeries([]int64{1, 2, 3}, []float64{nan, nan, nan})},
		{"sparse ints", oneSeries([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9}, []float64{nan, 1, nan, 3, 4, 5, 6, 7, nan})},
		{"sparse floats", oneSeries([]int64{1, 2, 3}, []float64{0.5, nan, 2.25})},
		{"mixed columns", oneSeries([]int64{10, 20, 30}, []float64{1, 2, 3}, []float64{1.5, nan, 3}, []float64{nan, nan, nan})},
		{"unicode strings", &Samples{Series: []SeriesData{{
			Key: SeriesKey{Source: "vc-Zürich", EntityKind: "host", EntityID: "host-9", Instance: "vmnic0",
				Counters: []Counter{{Name: "net.usage.average", Unit: "KBps"}, {Name: "温度", Unit: "°C"}}},
			Timestamps: []int64{5},
			Values:     [][]float64{{1}, {2}},
		}}}},
		{"realistic 3 points", genVSphere(50, 3, 7)},
		{"realistic 15 points", genVSphere(20, 15, 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := EncodeSamples(tt.s)
			if err != nil {
				t.Fatalf("EncodeSamples: %v", err)
			}
			got, err := DecodeSamples(p)
			if err != nil {
				t.Fatalf("DecodeSamples: %v", err)
			}
			if d := diffSamples(tt.s, got); d != "" {
				t.Fatal(d)
			}
			if got.Count() != tt.s.Count() {
				t.Fatalf("Count() = %d after round trip, want %d", got.Count(), tt.s.Count())
			}
			// Appending to a prefix keeps the prefix and the same bytes.
			q, err := AppendSamples([]byte("prefix"), tt.s)
			if err != nil || !bytes.HasPrefix(q, []byte("prefix")) || !bytes.Equal(q[6:], p) {
				t.Fatalf("AppendSamples differs from EncodeSamples (err %v)", err)
			}
		})
	}
}

func TestSamplesCount(t *testing.T) {
	s := oneSeries([]int64{1, 2, 3}, []float64{1, nan, 3}, []float64{nan, nan, 0})
	if got := s.Count(); got != 3 {
		t.Fatalf("Count() = %d, want 3", got)
	}
}

func TestSamplesSharedSchema(t *testing.T) {
	s := genVSphere(10, 2, 3)
	p, err := EncodeSamples(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSamples(p)
	if err != nil {
		t.Fatal(err)
	}
	a, b := got.Series[0].Key.Counters, got.Series[9].Key.Counters
	if &a[0] != &b[0] {
		t.Error("series with the same counters do not share one Counters slice")
	}
	if cap(a) != len(a) {
		t.Errorf("shared Counters has spare capacity %d, an append would clobber it", cap(a)-len(a))
	}
}

func TestEncodeSamplesRejects(t *testing.T) {
	long := strings.Repeat("x", MaxStringLen+1)
	many := make([]Counter, MaxCountersPerSeries+1)
	for i := range many {
		many[i] = Counter{Name: fmt.Sprint(i)}
	}
	key := func(f func(*SeriesKey)) *Samples {
		s := oneSeries([]int64{1}, []float64{1})
		f(&s.Series[0].Key)
		return s
	}
	tests := []struct {
		name string
		s    *Samples
		code ErrorCode
		msg  string
	}{
		{"values per counter", oneSeries([]int64{1, 2}, []float64{1}), ErrCodeMalformed, "counter 0 has 1 values for 2 timestamps"},
		{"columns per counter", &Samples{Series: []SeriesData{{Key: SeriesKey{Source: "s", EntityKind: "vm", EntityID: "vm-1", Counters: []Counter{{Name: "a"}}}, Timestamps: []int64{1}}}}, ErrCodeMalformed, "0 value columns for 1 counters"},
		{"equal timestamps", oneSeries([]int64{5, 5}, []float64{1, 2}), ErrCodeMalformed, "timestamp 1 (5) not after 5"},
		{"descending timestamps", oneSeries([]int64{5, 4}, []float64{1, 2}), ErrCodeMalformed, "not after"},
		{"empty source", key(func(k *SeriesKey) { k.Source = "" }), ErrCodeMalformed, "series 0: empty source"},
		{"empty kind", key(func(k *SeriesKey) { k.EntityKind = "" }), ErrCodeMalformed, "empty entity kind"},
		{"empty id", key(func(k *SeriesKey) { k.EntityID = "" }), ErrCodeMalformed, "empty entity ID"},
		{"long instance", key(func(k *SeriesKey) { k.Instance = long }), ErrCodeTooLarge, "instance length 4097 exceeds 4096"},
		{"invalid UTF-8", key(func(k *SeriesKey) { k.EntityID = "vm-\xff" }), ErrCodeMalformed, "entity ID is not valid UTF-8"},
		{"empty counter name", key(func(k *SeriesKey) { k.Counters = []Counter{{Unit: "%"}} }), ErrCodeMalformed, "empty counter name"},
		{"duplicate counter", &Samples{Series: []SeriesData{{Key: SeriesKey{Source: "s", EntityKind: "vm", EntityID: "vm-1", Counters: []Counter{{Name: "a"}, {Name: "a", Unit: "x"}}}, Timestamps: []int64{1}, Values: [][]float64{{1}, {2}}}}}, ErrCodeMalformed, `duplicate counter "a"`},
		{"too many counters", &Samples{Series: []SeriesData{{Key: SeriesKey{Source: "s", EntityKind: "vm", EntityID: "vm-1", Counters: many}, Values: make([][]float64, len(many))}}}, ErrCodeTooLarge, "counter count 513 exceeds 512"},
		{"too many points", oneSeries(make([]int64, MaxPointsPerSeries+1)), ErrCodeTooLarge, "point count 65537 exceeds 65536"},
		{"too many series", &Samples{Series: make([]SeriesData, MaxSeriesPerBatch+1)}, ErrCodeTooLarge, "series count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EncodeSamples(tt.s)
			if err == nil {
				t.Fatal("EncodeSamples succeeded")
			}
			if CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q (code %s), want code %s containing %q", err, CodeOf(err), tt.code, tt.msg)
			}
		})
	}
}

func TestEncodeSamplesCellBudget(t *testing.T) {
	// 200 series × 65,536 points × (1+1) cells exceeds MaxValuesPerBatch.
	ts := make([]int64, MaxPointsPerSeries)
	col := make([]float64, MaxPointsPerSeries)
	for i := range ts {
		ts[i] = int64(i)
	}
	s := &Samples{}
	for i := 0; i < 200; i++ {
		s.Series = append(s.Series, oneSeries(ts, col).Series[0])
	}
	_, err := EncodeSamples(s)
	if CodeOf(err) != ErrCodeTooLarge || !strings.Contains(err.Error(), "cells") {
		t.Fatalf("error %v, want a cell budget error", err)
	}
}

// samplesWire builds a samples payload by hand, to reach decoder paths an
// encoder never produces.
type samplesWire struct {
	strs     []string
	schemas  [][2]uint64 // one counter per schema: name and unit ref
	nseries  uint64
	keys     []byte
	times    []byte
	vals     []byte
	keysLen  int // -1: len(keys)
	format   byte
	nstrOver uint64 // if set, the string count
}

func (w samplesWire) bytes() []byte {
	b := []byte{w.format}
	if w.format == 0 {
		b[0] = samplesFormat
	}
	n := uint64(len(w.strs))
	if w.nstrOver != 0 {
		n = w.nstrOver
	}
	b = appendUv(b, n)
	for _, s := range w.strs {
		b = appendUv(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = appendUv(b, uint64(len(w.schemas)))
	for _, sc := range w.schemas {
		b = appendUv(b, 1)
		b = appendUv(b, sc[0])
		b = appendUv(b, sc[1])
	}
	b = appendUv(b, w.nseries)
	kl := len(w.keys)
	if w.keysLen != 0 {
		kl = w.keysLen
	}
	b = appendUv(b, uint64(kl))
	b = appendUv(b, uint64(len(w.times)))
	b = append(b, w.keys...)
	b = append(b, w.times...)
	return append(b, w.vals...)
}

func appendUv(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendZv(b []byte, v int64) []byte { return appendUv(b, zigzag(v)) }

// goodWire is a valid one-series, one-counter, two-point payload:
// source "s", kind "vm", id "vm-1", instance "", counter "c" unit "".
func goodWire() samplesWire {
	return samplesWire{
		strs:    []string{"s", "vm", "vm-1", "", "c"},
		schemas: [][2]uint64{{4, 3}},
		nseries: 1,
		// refs as deltas from 0: 0,1,2,3, schema 0; 2 points
		keys:  []byte{0, 2, 4, 6, 0, 2},
		times: appendZv(appendZv(nil, 1000), 20),
		vals:  []byte{colInt, 2, 2},
	}
}

func TestDecodeSamplesGood(t *testing.T) {
	s, err := DecodeSamples(goodWire().bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := &Samples{Series: []SeriesData{{
		Key:        SeriesKey{Source: "s", EntityKind: "vm", EntityID: "vm-1", Counters: []Counter{{Name: "c"}}},
		Timestamps: []int64{1000, 1020},
		Values:     [][]float64{{1, 2}},
	}}}
	if d := diffSamples(want, s); d != "" {
		t.Fatal(d)
	}
}

func TestDecodeSamplesRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(*samplesWire)
		raw  []byte
		code ErrorCode
		msg  string
	}{
		{name: "empty", raw: []byte{}, code: ErrCodeMalformed, msg: "format: truncated"},
		{name: "unknown format", edit: func(w *samplesWire) { w.format = 9 }, code: ErrCodeUnsupported, msg: "unknown format 9"},
		{name: "string count beyond input", edit: func(w *samplesWire) { w.nstrOver = 1000 }, code: ErrCodeMalformed, msg: "string count 1000 exceeds what the remaining"},
		{name: "string too long", edit: func(w *samplesWire) { w.strs[0] = strings.Repeat("a", MaxStringLen+1) }, code: ErrCodeTooLarge, msg: "string length 4097 exceeds 4096"},
		{name: "invalid UTF-8", edit: func(w *samplesWire) { w.strs[2] = "vm-\xc3" }, code: ErrCodeMalformed, msg: "string 2 is not valid UTF-8"},
		{name: "counter ref out of range", edit: func(w *samplesWire) { w.schemas[0][0] = 5 }, code: ErrCodeMalformed, msg: "schema 0: counter 0: string ref out of range"},
		{name: "empty counter name", edit: func(w *samplesWire) { w.schemas[0][0] = 3 }, code: ErrCodeMalformed, msg: "schema 0: counter 0: empty name"},
		{name: "key ref out of range", edit: func(w *samplesWire) { w.keys[2] = 40 }, code: ErrCodeMalformed, msg: "series 0: string ref 20 out of range"},
		{name: "schema ref out of range", edit: func(w *samplesWire) { w.keys[4] = 2 }, code: ErrCodeMalformed, msg: "series 0: schema ref 1 out of range"},
		{name: "empty source", edit: func(w *samplesWire) { w.keys[0] = 6 }, code: ErrCodeMalformed, msg: "series 0: empty source"},
		{name: "too many points", edit: func(w *samplesWire) {
			w.keys = appendUv(w.keys[:5], MaxPointsPerSeries+1)
		}, code: ErrCodeTooLarge, msg: "series 0: point count 65537 exceeds 65536"},
		{name: "series count beyond input", edit: func(w *samplesWire) { w.nseries = 1 << 19 }, code: ErrCodeMalformed, msg: "series count 524288 exceeds what the remaining"},
		{name: "too many series", edit: func(w *samplesWire) { w.nseries = MaxSeriesPerBatch + 1 }, code: ErrCodeTooLarge, msg: "series count 1048577 exceeds 1048576"},
		{name: "sections beyond input", edit: func(w *samplesWire) { w.keysLen = 100 }, code: ErrCodeMalformed, msg: "keys section length 100 exceeds"},
		{name: "truncated keys", edit: func(w *samplesWire) { w.nseries = 2 }, code: ErrCodeMalformed, msg: "series 1: key ref: truncated varint"},
		{name: "trailing keys", edit: func(w *samplesWire) { w.keys = append(w.keys, 0) }, code: ErrCodeMalformed, msg: "1 trailing bytes in keys section"},
		{name: "timestamps not ascending", edit: func(w *samplesWire) { w.times = appendZv(appendZv(nil, 1000), 0) }, code: ErrCodeMalformed, msg: "series 0: timestamp 1 not after 1000"},
		{name: "timestamp overflow", edit: func(w *samplesWire) { w.times = appendZv(appendZv(nil, math.MaxInt64), 1) }, code: ErrCodeMalformed, msg: "not after"},
		{name: "truncated times", edit: func(w *samplesWire) { w.times = appendZv(nil, 1000) }, code: ErrCodeMalformed, msg: "series 0: timestamp delta: truncated"},
		{name: "unknown column encoding", edit: func(w *samplesWire) { w.vals = []byte{9, 2, 2} }, code: ErrCodeUnsupported, msg: "series 0: counter 0: unknown column encoding 9"},
		{name: "truncated column", edit: func(w *samplesWire) { w.vals = []byte{colInt, 2} }, code: ErrCodeMalformed, msg: "series 0: value: truncated"},
		{name: "truncated bitmap", edit: func(w *samplesWire) { w.vals = []byte{colIntSparse} }, code: ErrCodeMalformed, msg: "presence bitmap: 1 bytes needed, 0 left"},
		{name: "bad float header", edit: func(w *samplesWire) { w.vals = []byte{colFloat, 0x59, 0} }, code: ErrCodeMalformed, msg: "counter 0: value 0: bad float header 0x59"},
		{name: "trailing values", edit: func(w *samplesWire) { w.vals = append(w.vals, 0) }, code: ErrCodeMalformed, msg: "1 trailing bytes in values section"},
		{name: "varint overflow", edit: func(w *samplesWire) {
			w.vals = append([]byte{colInt}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 2)
		}, code: ErrCodeMalformed, msg: "value: varint overflows 64 bits"},
		{name: "cell budget", edit: func(w *samplesWire) {
			// 130 series × 65,536 points × 1 counter, every column "missing":
			// a few hundred bytes that would decode to over 8M cells.
			w.nseries = 130
			w.keys = nil
			for i := 0; i < 130; i++ {
				if i == 0 {
					w.keys = append(w.keys, 0, 2, 4, 6, 0)
				} else {
					w.keys = append(w.keys, 0, 0, 0, 0, 0)
				}
				w.keys = appendUv(w.keys, MaxPointsPerSeries)
			}
			w.vals = bytes.Repeat([]byte{colMissing}, 130)
		}, code: ErrCodeTooLarge, msg: "batch exceeds 8388608 cells"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.raw
			if p == nil {
				w := goodWire()
				tt.edit(&w)
				p = w.bytes()
			}
			_, err := DecodeSamples(p)
			if err == nil {
				t.Fatal("DecodeSamples succeeded")
			}
			if CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q (code %s), want code %s containing %q", err, CodeOf(err), tt.code, tt.msg)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
		})
	}
}

func FuzzDecodeSamples(f *testing.F) {
	f.Add(goodWire().bytes())
	for _, s := range []*Samples{
		{},
		oneSeries([]int64{1, 2, 3}, []float64{1, nan, 3}, []float64{0.5, 1.5, nan}, []float64{nan, nan, nan}),
		oneSeries([]int64{math.MinInt64, math.MaxInt64}, []float64{-(1 << 63), 1e300}),
		genVSphere(3, 4, 1),
	} {
		p, err := EncodeSamples(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := DecodeSamples(p)
		if err != nil {
			if s != nil {
				t.Fatal("DecodeSamples returned samples and an error")
			}
			if CodeOf(err) == ErrCodeInternal {
				t.Fatalf("decode error without a code: %v", err)
			}
			return
		}
		q, err := EncodeSamples(s)
		if err != nil {
			t.Fatalf("re-encoding decoded samples: %v", err)
		}
		s2, err := DecodeSamples(q)
		if err != nil {
			t.Fatalf("decoding re-encoded samples: %v", err)
		}
		if d := diffSamples(s, s2); d != "" {
			t.Fatalf("re-encoded samples differ: %s", d)
		}
	})
}

// Empty series cost memory when decoded even though they cost almost
// nothing on the wire: the budget counts them, and what the encoder accepts
// the decoder accepts.
func TestSeriesOverheadCountsAgainstTheBudget(t *testing.T) {
	many := func(n int) *Samples {
		s := &Samples{Series: make([]SeriesData, n)}
		for i := range s.Series {
			s.Series[i] = SeriesData{Key: SeriesKey{Source: "vc", EntityKind: "vm", EntityID: "vm-1", Counters: []Counter{{Name: "c"}}}, Values: [][]float64{{}}}
		}
		return s
	}
	limit := MaxValuesPerBatch / SeriesCost(0, 1)
	if _, err := EncodeSamples(many(limit + 1)); CodeOf(err) != ErrCodeTooLarge {
		t.Fatalf("%d empty series: err %v, want TooLarge", limit+1, err)
	}
	p, err := EncodeSamples(many(limit))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeSamples(p); err != nil {
		t.Fatalf("the decoder refused what the encoder accepted: %v", err)
	}
}
