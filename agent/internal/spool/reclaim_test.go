package spool

import (
	"os"
	"testing"
	"time"
)

// diskBytes is the size of the spool's files.
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// Acknowledged batches must leave the disk. With Badger's defaults (16 MB
// memtables, background compactors) the key-only LSM was never flushed,
// value-log GC had no discard statistics, and a drained 120 MB backlog
// stayed on disk for good.
func TestAckedSpaceIsReclaimed(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 120 MB; skipped with -short")
	}
	dir := t.TempDir()
	q, err := Open(dir, Options{MaxBytes: 1 << 40, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var seqs []uint64
	for i := range 480 {
		seqs = append(seqs, mustAppend(t, q, batch(i, 256<<10)))
	}
	peak := diskBytes(t, dir)
	if err := q.Ack(seqs...); err != nil {
		t.Fatal(err)
	}
	// Collection goes on while the space is reclaimed.
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		for j := range 20 {
			if err := q.Ack(mustAppend(t, q, batch(i*20+j, 8<<10))); err != nil {
				t.Fatal(err)
			}
		}
		size := diskBytes(t, dir)
		if size < peak/2 {
			t.Logf("peak %d MB, %d MB after %d rounds", peak>>20, size>>20, i+1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d MB on disk a minute after acknowledging a %d MB backlog; levels %s", size>>20, peak>>20, q.db.LevelsToString())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := q.Stats(); st.Depth != 0 {
		t.Fatalf("%d batches left after acking all", st.Depth)
	}
}
