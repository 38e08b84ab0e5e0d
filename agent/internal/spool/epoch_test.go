package spool

import (
	"testing"

	"github.com/vmpulse/vmpulse/protocol"
)

func TestNewEpochKeepsBatchesAndPersists(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := q.Append(&protocol.Batch{Kind: protocol.KindEvents, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	old := q.Epoch()
	epoch, err := q.NewEpoch()
	if err != nil {
		t.Fatal(err)
	}
	if epoch == old || epoch == 0 || q.Epoch() != epoch || q.Stats().Epoch != epoch {
		t.Fatalf("epoch %d → %d (Epoch() %d)", old, epoch, q.Epoch())
	}
	got, err := q.Oldest(10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Epoch != epoch || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("stored batches after the new epoch: %+v", got)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	b := &protocol.Batch{Kind: protocol.KindEvents, Payload: []byte("y")}
	if err := q.Append(b); err != nil {
		t.Fatal(err)
	}
	if q.Epoch() != epoch || b.Epoch != epoch || b.Seq != 3 {
		t.Fatalf("after reopen: epoch %d (want %d), appended %d/%d (want seq 3)", q.Epoch(), epoch, b.Epoch, b.Seq)
	}
}
