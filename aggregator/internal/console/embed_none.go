//go:build !console

package console

import "io/fs"

// embedded is nil: this binary was built without -tags console.
func embedded() fs.FS { return nil }
