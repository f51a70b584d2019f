package journal

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const crashChildEnv = "BADBATCH_JOURNAL_CRASH_CHILD_DIR"

func crashRec(seq int64) Record { return rec(seq, int(seq%300)) }

// TestCrashChild is the child process of TestKill9: it appends and commits
// batches forever, printing each durable sequence ("an acknowledgement")
// after Commit, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("child process of TestKill9")
	}
	j, err := Open(Options{Dir: dir, SegmentSize: 64 << 10, Fsync: FsyncPolicy(os.Getenv("BADBATCH_JOURNAL_CRASH_FSYNC")), FsyncInterval: time.Millisecond, Logger: testLogger()})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	seq := j.LastSequence() + 1
	fmt.Fprintf(out, "START %d\n", seq)
	out.Flush()
	for {
		n := 1 + rng.IntN(50)
		for i := 0; i < n; i++ {
			if err := j.Append(crashRec(seq)); err != nil {
				fmt.Println("ERR", err)
				os.Exit(3)
			}
			seq++
		}
		if err := j.Commit(); err != nil {
			fmt.Println("ERR", err)
			os.Exit(3)
		}
		d := j.Durable()
		if d < seq-1 { // interval: acknowledge only what is fsynced
			if err := j.WaitDurable(t.Context(), seq-1); err != nil {
				fmt.Println("ERR", err)
				os.Exit(3)
			}
			d = j.Durable()
		}
		fmt.Fprintf(out, "D %d\n", d)
		out.Flush()
	}
}

// TestKill9 runs a writer process, kills it with SIGKILL at random points,
// reopens the journal and checks that every acknowledged (durable) sequence
// is present with identical data, and that sequences stay unique and
// contiguous across restarts. BADBATCH_SOAK=1 runs more cycles.
func TestKill9(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in child")
	}
	cycles := 10
	if os.Getenv("BADBATCH_SOAK") != "" {
		cycles = 200
	}
	for _, policy := range []FsyncPolicy{FsyncBatch, FsyncInterval, FsyncNever} {
		t.Run(string(policy), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(42, uint64(len(policy))))
			acked := int64(-1)
			for c := 0; c < cycles; c++ {
				cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, "BADBATCH_JOURNAL_CRASH_FSYNC="+string(policy))
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				lines := make(chan string, 1024)
				go func() {
					defer close(lines)
					sc := bufio.NewScanner(stdout)
					for sc.Scan() {
						lines <- sc.Text()
					}
				}()
				deadline := time.After(time.Duration(20+rng.IntN(150)) * time.Millisecond)
				started := false
			read:
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							break read
						}
						switch {
						case strings.HasPrefix(l, "START "):
							start, _ := strconv.ParseInt(l[6:], 10, 64)
							if start <= acked {
								t.Fatalf("cycle %d: child restarted at %d, below acknowledged %d", c, start, acked)
							}
							started = true
						case strings.HasPrefix(l, "D "):
							d, _ := strconv.ParseInt(l[2:], 10, 64)
							acked = max(acked, d)
						case strings.HasPrefix(l, "ERR"):
							t.Fatalf("cycle %d: child: %s", c, l)
						}
					case <-deadline:
						if started {
							break read
						}
						deadline = time.After(10 * time.Millisecond)
					}
				}
				cmd.Process.Kill()
				for range lines { // drain what it printed before dying
				}
				cmd.Wait()
				// Acknowledgements printed before the kill are all in.
				j := openT(t, Options{Dir: dir, SegmentSize: 64 << 10})
				if j.LastSequence() < acked {
					t.Fatalf("cycle %d: acknowledged %d but recovered only up to %d", c, acked, j.LastSequence())
				}
				n := int64(0)
				err = j.Replay(0, func(r Record) error {
					if r.Sequence != n {
						return fmt.Errorf("sequence %d where %d expected", r.Sequence, n)
					}
					if !sameRecord(r, crashRec(r.Sequence)) {
						return fmt.Errorf("sequence %d has different data", r.Sequence)
					}
					n++
					return nil
				})
				if err != nil {
					t.Fatalf("cycle %d: %v", c, err)
				}
				if n-1 != j.LastSequence() {
					t.Fatalf("cycle %d: replayed up to %d, last %d", c, n-1, j.LastSequence())
				}
				j.Close()
			}
			t.Logf("fsync=%s: %d kill -9 cycles, acknowledged %d, lost 0", policy, cycles, acked+1)
		})
	}
}
