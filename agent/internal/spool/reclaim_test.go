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

// One Append that drops thousands of small batches commits in many parts
// and flushes many memtables at once. With Badger's default level-0 stall
// (15 tables) and no background compactors, the flush blocked inside the
// commit while maintenance waited for the writer: the spool hung for good
// at about 12,000 dropped batches.
func TestLargeDropDoesNotStall(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 20,000 batches; skipped with -short")
	}
	dir := t.TempDir()
	q, err := Open(dir, Options{MaxBytes: 1 << 30, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := range n {
		mustAppend(t, q, batch(i, 1100))
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with a quota a tenth of what is stored: the next append
	// drops nearly everything in one go.
	q, err = Open(dir, Options{MaxBytes: int64(n) * 1100 / 10, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	done := make(chan error, 1)
	go func() { done <- q.Append(batch(n, 1100)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("an append dropping ~%d batches did not return in a minute; levels %s", n*9/10, q.db.LevelsToString())
	}
	st := q.Stats()
	if st.Dropped < n/2 || st.Depth == 0 {
		t.Fatalf("after the drop: %+v", st)
	}
	// And the spool still works.
	if err := q.Ack(mustAppend(t, q, batch(n+1, 1100))); err != nil {
		t.Fatal(err)
	}
}
