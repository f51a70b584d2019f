package journal

import (
	"io"
	"os"
)

// File is the part of *os.File the journal uses. Every byte the journal
// reads or writes, and every fsync, goes through a File obtained from an
// [Opener], which lets tests inject write and fsync failures on real files.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Sync flushes the file (or, for a directory, its entries) to stable storage.
	Sync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Stat describes the file.
	Stat() (os.FileInfo, error)
	io.Closer
}

// Opener opens files (segments, index and checkpoint files, and the
// journal directory itself for fsync) with os.OpenFile semantics.
type Opener func(name string, flag int, perm os.FileMode) (File, error)

// OSOpener is the default [Opener]: os.OpenFile.
func OSOpener(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
