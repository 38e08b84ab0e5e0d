package backup

import "io"

// SetCreateFile replaces how dump files are created (a full disk).
func SetCreateFile(s *Service, f func(path string) (io.WriteCloser, error)) { s.createFile = f }

// SetLoadHook makes a restore call f in maintenance mode before loading.
func SetLoadHook(s *Service, f func()) { s.loadHook = f }
