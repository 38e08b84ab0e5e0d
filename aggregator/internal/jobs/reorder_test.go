package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

type tw struct{ t testing.TB }

func (w tw) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

// interleaved fills days whole days from first with series × perDay rows in
// arrival order — every series at one timestamp, then the next — the way
// ingest writes them.
func interleaved(t testing.TB, st *store.Store, first time.Time, days, series, perDay int) {
	t.Helper()
	ctx := context.Background()
	if err := st.EnsurePartitions(ctx, first, first.AddDate(0, 0, days)); err != nil {
		t.Fatal(err)
	}
	step := 24 * time.Hour / time.Duration(perDay)
	for d := 0; d < days; d++ {
		day := first.AddDate(0, 0, d)
		if _, err := st.Pool().Exec(ctx, `
			INSERT INTO samples (series_id, ts, v)
			SELECT s, $1::timestamptz + i * $2::bigint * interval '1 microsecond', ARRAY[random(), random(), random(), random()]::real[]
			FROM generate_series(0, $3 - 1) i, generate_series(1, $4) s ORDER BY i, s`,
			day, step.Microseconds(), perDay, series); err != nil {
			t.Fatal(err)
		}
	}
}

// seriesBuffers is the shared buffers (hit or read) touched reading one
// series over [from, to), the second of two runs.
func seriesBuffers(t testing.TB, st *store.Store, id int, from, to time.Time) (buffers, rows int64) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		var plan []byte
		if err := st.Pool().QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM samples WHERE series_id = $1 AND ts >= $2 AND ts < $3`,
			id, from, to).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		var doc []struct {
			Plan struct {
				Hit  int64 `json:"Shared Hit Blocks"`
				Read int64 `json:"Shared Read Blocks"`
				Rows int64 `json:"Actual Rows"`
			} `json:"Plan"`
		}
		if err := json.Unmarshal(plan, &doc); err != nil {
			t.Fatal(err)
		}
		buffers, rows = doc[0].Plan.Hit+doc[0].Plan.Read, doc[0].Plan.Rows
	}
	return buffers, rows
}

func newRun(t testing.TB, st *store.Store) *Run {
	r, err := New(st.Pool(), Options{Logger: slog.New(slog.NewTextHandler(tw{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &Run{r: r, job: JobReorder}
}

// TestReorderClosedPartitions: the reorder job CLUSTERs the closed
// partitions (not today's), newest first and a bounded number per run, and
// afterwards one series' rows take a fraction of the pages they took in
// arrival order.
func TestReorderClosedPartitions(t *testing.T) {
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -3)
	interleaved(t, st, first, 4, 300, 48) // three closed days and today
	before, rows := seriesBuffers(t, st, 7, first, today)
	if rows != 3*48 {
		t.Fatalf("%d rows of series 7", rows)
	}
	ctx := context.Background()
	rep, err := reorder(ctx, st, newRun(t, st), time.Now(), 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"samples_p" + today.AddDate(0, 0, -1).Format("20060102"), "samples_p" + today.AddDate(0, 0, -2).Format("20060102")}
	if fmt.Sprint(rep.Reordered) != fmt.Sprint(want) || rep.Pending != 1 {
		t.Errorf("first run: %+v, want %v and one pending", rep, want)
	}
	rep, err = reorder(ctx, st, newRun(t, st), time.Now(), 2)
	if err != nil || len(rep.Reordered) != 1 || rep.Pending != 0 {
		t.Errorf("second run: %+v %v", rep, err)
	}
	rep, err = reorder(ctx, st, newRun(t, st), time.Now(), 2)
	if err != nil || len(rep.Reordered) != 0 {
		t.Errorf("third run has nothing to do: %+v %v", rep, err)
	}
	after, rows := seriesBuffers(t, st, 7, first, today)
	t.Logf("buffers for one series over 3 days: %d before, %d after", before, after)
	if rows != 3*48 || after*5 > before {
		t.Errorf("buffers %d → %d (%d rows): reordering did not gather the series", before, after, rows)
	}
}

// BenchmarkReorder measures the buffers one series' month touches before
// and after the reorder job (500 series, a sample every 10 minutes, 30
// days, written in arrival order), and how long the job takes per day.
func BenchmarkReorder(b *testing.B) {
	st, err := store.Open(context.Background(), pgtest.NewDatabase(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const days, series, perDay = 30, 500, 144
	first := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -days-2)
	last := first.AddDate(0, 0, days)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := st.Pool().Exec(context.Background(), `TRUNCATE samples`); err != nil {
			b.Fatal(err)
		}
		interleaved(b, st, first, days, series, perDay)
		before, _ := seriesBuffers(b, st, 123, first, last)
		b.StartTimer()
		start := time.Now()
		rep, err := reorder(context.Background(), st, newRun(b, st), time.Now(), days)
		if err != nil || len(rep.Reordered) < days {
			b.Fatalf("%+v %v", rep, err)
		}
		took := time.Since(start)
		b.StopTimer()
		after, rows := seriesBuffers(b, st, 123, first, last)
		b.ReportMetric(float64(before), "buffers_before")
		b.ReportMetric(float64(after), "buffers_after")
		fmt.Printf("figure: reorder_series_month_buffers_before %d buffers (%d rows)\n", before, rows)
		fmt.Printf("figure: reorder_series_month_buffers_after %d buffers\n", after)
		fmt.Printf("figure: reorder_ms_per_partition %.0f ms (%d rows each)\n", float64(took.Milliseconds())/float64(len(rep.Reordered)), series*perDay)
		b.StartTimer()
	}
}
