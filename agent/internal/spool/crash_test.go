package spool

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashDirEnv tells a re-executed test binary to run the crash child.
const crashDirEnv = "VMPULSE_SPOOL_CRASH_DIR"

// TestCrash kills a process appending to the spool with SIGKILL, several
// times, and checks after each kill that every batch whose Append had
// returned is still there, that acked batches stay deleted, and that no seq
// is ever handed out twice.
func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	var epoch, maxSeq uint64
	for round := range 3 {
		printed, acked, childEpoch := runCrashChild(t, dir, 150+round*100)
		if len(printed) == 0 {
			t.Fatalf("round %d: the child appended nothing", round)
		}

		q, err := Open(dir, Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		if epoch == 0 {
			epoch = q.Epoch()
		}
		if q.Epoch() != epoch || childEpoch != epoch {
			t.Fatalf("round %d: epoch %d, child saw %d, first %d", round, q.Epoch(), childEpoch, epoch)
		}
		for _, seq := range printed {
			if seq <= maxSeq {
				t.Fatalf("round %d: seq %d reused (a previous round reached %d)", round, seq, maxSeq)
			}
			if acked[seq] {
				if _, err := q.Get(seq); err == nil {
					t.Fatalf("round %d: acked seq %d came back", round, seq)
				}
				continue
			}
			if _, err := q.Get(seq); err != nil {
				// The child acks seq L-1 right after printing "seq L": the
				// kill may land after that Ack committed and before its
				// "ack" line, so for the last printed seq L, L-1 may be
				// gone. Nothing else may.
				if len(printed) >= 2 && seq == printed[len(printed)-2] && printed[len(printed)-1] == seq+1 {
					continue
				}
				t.Fatalf("round %d: seq %d was appended before the kill: %v", round, seq, err)
			}
		}
		stored := seqsOf(all(t, q))
		for i := 1; i < len(stored); i++ {
			if stored[i] <= stored[i-1] {
				t.Fatalf("round %d: stored seqs not strictly increasing: %v", round, stored)
			}
		}
		maxSeq = max(printed[len(printed)-1], stored[len(stored)-1])
		b := batch(0, 100)
		if err := q.Append(b); err != nil {
			t.Fatalf("round %d: append after reopen: %v", round, err)
		}
		if b.Seq <= maxSeq {
			t.Fatalf("round %d: seq %d reused after kill; %d already handed out", round, b.Seq, maxSeq)
		}
		maxSeq = b.Seq
		t.Logf("round %d: %d appends survived the kill, next seq %d", round, len(printed), b.Seq)
		if err := q.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
	}
}

// runCrashChild starts the child, lets it print n appended seqs, kills it
// with SIGKILL and returns every seq it printed, the seqs it acked and the
// epoch it reported.
func runCrashChild(t *testing.T, dir string, n int) (printed []uint64, acked map[uint64]bool, epoch uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()

	acked = map[uint64]bool{}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		verb, arg, _ := strings.Cut(sc.Text(), " ")
		v, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		switch verb {
		case "epoch":
			epoch = v
		case "seq":
			printed = append(printed, v)
		case "ack":
			acked[v] = true
		}
		if len(printed) == n && !killed {
			// Kill mid-stream; keep reading what the child printed
			// before it died.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("kill child: %v", err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited on its own: %v", err)
	}
	return printed, acked, epoch
}

// crashChild appends 20 KiB batches forever, acking every third one, and
// prints each seq once Append (or Ack) has returned.
func crashChild(dir string) {
	q, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	fmt.Printf("epoch %d\n", q.Epoch())
	for i := 0; ; i++ {
		b := batch(i, 20<<10)
		if err := q.Append(b); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		fmt.Printf("seq %d\n", b.Seq)
		if i%3 == 2 {
			if err := q.Ack(b.Seq - 1); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(2)
			}
			fmt.Printf("ack %d\n", b.Seq-1)
		}
	}
}
