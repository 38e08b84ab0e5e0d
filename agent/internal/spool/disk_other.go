//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package spool

import (
	"errors"
	"fmt"
)

// diskSpace is not implemented on this platform; Open rejects a non-zero
// MinFreeBytes here rather than silently ignoring it.
func diskSpace(dir string) (free, used uint64, err error) {
	return 0, 0, fmt.Errorf("free space of %s: %w", dir, errors.ErrUnsupported)
}
