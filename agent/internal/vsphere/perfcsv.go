package vsphere

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// The collector asks QueryPerf for the CSV format (PerfQuerySpec.format
// "csv"): an entity's samples come back as one sampleInfoCSV string
// ("interval,timestamp,interval,timestamp,...") and one string of values
// per series ("v1,v2,..."), instead of an element per sample time and per
// value, each series tagged with its xsi:type. The server produces and
// the agent parses fewer elements and bytes (in govmomi's simulator the
// response costs about half as much to encode at one sample a metric, and
// the bytes shrink by a third). fromCSV turns the results back into
// PerfEntityMetric, so that everything after queryPerf reads one shape.

// queryFormat is the PerfQuerySpec.format the collector asks for.
const queryFormat = string(types.PerfFormatCsv)

// fromCSV replaces every PerfEntityMetricCSV in ret by the equivalent
// PerfEntityMetric (PerfMetricIntSeries values, -1 for an empty field);
// other results are kept. A malformed CSV result is an error naming the
// entity.
func fromCSV(ret []types.BasePerfEntityMetricBase) ([]types.BasePerfEntityMetricBase, error) {
	for i, b := range ret {
		c, ok := b.(*types.PerfEntityMetricCSV)
		if !ok {
			continue
		}
		em, err := csvEntityMetric(c)
		if err != nil {
			return nil, fmt.Errorf("perf: vCenter's CSV result for %s %s: %w", c.Entity.Type, c.Entity.Value, err)
		}
		ret[i] = em
	}
	return ret, nil
}

// csvEntityMetric converts one CSV result.
func csvEntityMetric(c *types.PerfEntityMetricCSV) (*types.PerfEntityMetric, error) {
	em := &types.PerfEntityMetric{PerfEntityMetricBase: c.PerfEntityMetricBase}
	info, err := parseSampleInfoCSV(c.SampleInfoCSV)
	if err != nil {
		return nil, err
	}
	em.SampleInfo = info
	em.Value = make([]types.BasePerfMetricSeries, 0, len(c.Value))
	for i := range c.Value {
		v, err := parseValuesCSV(c.Value[i].Value, len(info))
		if err != nil {
			return nil, fmt.Errorf("counter %d instance %q: %w", c.Value[i].Id.CounterId, c.Value[i].Id.Instance, err)
		}
		em.Value = append(em.Value, &types.PerfMetricIntSeries{PerfMetricSeries: c.Value[i].PerfMetricSeries, Value: v})
	}
	return em, nil
}

// parseSampleInfoCSV parses "interval,timestamp,..." pairs; spaces around
// fields are ignored, an empty string has no samples.
func parseSampleInfoCSV(s string) ([]types.PerfSampleInfo, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	fields := strings.Split(s, ",")
	if len(fields)%2 != 0 {
		return nil, fmt.Errorf("sampleInfoCSV: %d fields, want interval,timestamp pairs", len(fields))
	}
	out := make([]types.PerfSampleInfo, len(fields)/2)
	for i := range out {
		iv, err := strconv.ParseInt(strings.TrimSpace(fields[2*i]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("sampleInfoCSV: sample %d: interval: %w", i, err)
		}
		ts, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(fields[2*i+1]))
		if err != nil {
			return nil, fmt.Errorf("sampleInfoCSV: sample %d: timestamp: %w", i, err)
		}
		out[i] = types.PerfSampleInfo{Interval: int32(iv), Timestamp: ts}
	}
	return out, nil
}

// parseValuesCSV parses n comma-separated integers; an empty field is -1,
// vSphere's "no value".
func parseValuesCSV(s string, n int) ([]int64, error) {
	if n == 0 {
		if strings.TrimSpace(s) != "" {
			return nil, fmt.Errorf("values %q without samples", truncateUTF8(s, 64))
		}
		return nil, nil
	}
	if got := strings.Count(s, ",") + 1; got != n {
		return nil, fmt.Errorf("%d values, want %d (one per sample)", got, n)
	}
	out := make([]int64, 0, n)
	for len(out) < n {
		field := s
		if i := strings.IndexByte(s, ','); i >= 0 {
			field, s = s[:i], s[i+1:]
		}
		field = strings.TrimSpace(field)
		if field == "" {
			out = append(out, -1)
			continue
		}
		v, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("value %d: %w", len(out), err)
		}
		out = append(out, v)
	}
	return out, nil
}
