//go:build linux || darwin || freebsd || netbsd || openbsd

package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// diskSpace reports the bytes available to unprivileged users on the
// filesystem holding dir, and the bytes the files in dir occupy on disk
// (allocated blocks, so Badger's sparse preallocated files count for what
// they really use).
func diskSpace(dir string) (free, used uint64, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	free = uint64(fs.Bavail) * uint64(fs.Bsize)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("read dir: %w", err)
	}
	for _, e := range ents {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, e.Name()), &st); err != nil {
			continue // Badger removed it meanwhile
		}
		used += uint64(st.Blocks) * 512
	}
	return free, used, nil
}
