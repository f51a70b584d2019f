package journal

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const checkpointExt = ".ckpt"

// validStage reports whether stage is usable as a checkpoint name: 1-128
// characters of [A-Za-z0-9._-], not starting with '.' or '-'.
func validStage(stage string) error {
	if len(stage) == 0 || len(stage) > 128 {
		return fmt.Errorf("journal: checkpoint stage name must be 1-128 characters, got %d", len(stage))
	}
	for i, c := range stage {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			(i > 0 && (c == '.' || c == '-'))
		if !ok {
			return fmt.Errorf("journal: invalid checkpoint stage name %q (use letters, digits, '_', and '.' or '-' after the first)", stage)
		}
	}
	return nil
}

// A checkpoint file holds one line: "<seq> <crc32c hex of 'stage seq'>".
func encodeCheckpoint(stage string, seq int64) []byte {
	s := strconv.FormatInt(seq, 10)
	sum := crc32.Checksum([]byte(stage+" "+s), castagnoli)
	return fmt.Appendf(nil, "%s %08x\n", s, sum)
}

func decodeCheckpoint(stage string, b []byte) (int64, error) {
	line, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		return 0, errors.New("missing newline")
	}
	s, sumHex, ok := strings.Cut(line, " ")
	if !ok {
		return 0, errors.New("malformed line")
	}
	seq, err := strconv.ParseInt(s, 10, 64)
	if err != nil || seq < -1 {
		return 0, fmt.Errorf("bad sequence %q", s)
	}
	sum, err := strconv.ParseUint(sumHex, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad checksum %q", sumHex)
	}
	if crc32.Checksum([]byte(stage+" "+s), castagnoli) != uint32(sum) {
		return 0, errors.New("checksum mismatch")
	}
	if !bytes.Equal(encodeCheckpoint(stage, seq), b) {
		return 0, errors.New("not in canonical form")
	}
	return seq, nil
}

func (j *Journal) loadCheckpoints() error {
	entries, err := os.ReadDir(j.opts.Dir)
	if err != nil {
		return fmt.Errorf("list checkpoints: %w", err)
	}
	for _, e := range entries {
		stage, ok := strings.CutSuffix(e.Name(), checkpointExt)
		if !ok || validStage(stage) != nil {
			continue
		}
		path := filepath.Join(j.opts.Dir, e.Name())
		b, err := readWhole(j.open, path)
		if err != nil {
			return fmt.Errorf("read checkpoint %s: %w", path, err)
		}
		seq, err := decodeCheckpoint(stage, b)
		if err != nil {
			// Checkpoints are written with rename, so this is not a torn
			// write but damage; refusing would stop the node, so replay
			// from the start instead (at-least-once) and say so.
			j.log.Error("journal: invalid checkpoint, the stage will replay from the earliest record", "file", path, "err", err)
			continue
		}
		j.checkpoints[stage] = seq
	}
	return nil
}

// SaveCheckpoint records that stage has processed every sequence <= seq.
// It is persisted atomically (temporary file, fsync, rename, directory
// fsync) before it returns, so call it per batch or periodically, not per
// event. seq may be -1 (nothing processed).
func (j *Journal) SaveCheckpoint(stage string, seq int64) error {
	if err := validStage(stage); err != nil {
		return err
	}
	if seq < -1 {
		return fmt.Errorf("journal: checkpoint sequence %d is below -1", seq)
	}
	j.ckMu.Lock()
	defer j.ckMu.Unlock()
	if j.closing.Load() {
		return ErrClosed
	}
	path := filepath.Join(j.opts.Dir, stage+checkpointExt)
	if err := writeAtomic(j.open, path, encodeCheckpoint(stage, seq), true); err != nil {
		return fmt.Errorf("journal: save checkpoint %q: %w", stage, err)
	}
	j.checkpoints[stage] = seq
	return nil
}

// Checkpoint returns the last sequence saved for stage, or -1 if none.
func (j *Journal) Checkpoint(stage string) int64 {
	j.ckMu.Lock()
	defer j.ckMu.Unlock()
	if seq, ok := j.checkpoints[stage]; ok {
		return seq
	}
	return -1
}

// Checkpoints returns a copy of every saved checkpoint by stage.
func (j *Journal) Checkpoints() map[string]int64 {
	j.ckMu.Lock()
	defer j.ckMu.Unlock()
	out := make(map[string]int64, len(j.checkpoints))
	for k, v := range j.checkpoints {
		out[k] = v
	}
	return out
}

// DeleteCheckpoint removes stage's checkpoint (file and memory). Deleting a
// checkpoint that does not exist is not an error.
func (j *Journal) DeleteCheckpoint(stage string) error {
	if err := validStage(stage); err != nil {
		return err
	}
	j.ckMu.Lock()
	defer j.ckMu.Unlock()
	if j.closing.Load() {
		return ErrClosed
	}
	path := filepath.Join(j.opts.Dir, stage+checkpointExt)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: delete checkpoint %q: %w", stage, err)
	}
	delete(j.checkpoints, stage)
	return syncDir(j.open, j.opts.Dir)
}
