//go:build console

package console

import (
	"embed"
	"io/fs"
)

// dist is the Vite build (npm run build in aggregator/web writes it here).
//
//go:embed all:dist
var dist embed.FS

func embedded() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil
	}
	return sub
}
