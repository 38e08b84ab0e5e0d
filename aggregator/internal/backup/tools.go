package backup

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// FindTool returns the path of a PostgreSQL client program (pg_dump,
// pg_restore): in binDir when set; else in the newest
// /usr/lib/postgresql/<version>/bin that has it (Debian's layout, as
// scripts/pg.sh finds the server); else on PATH.
func FindTool(binDir, name string) (string, error) {
	if binDir != "" {
		p := filepath.Join(binDir, name)
		if err := executable(p); err != nil {
			return "", newErr(CodeToolMissing, "%s: %v (backup.pg_bin_dir is %s)", name, err, binDir)
		}
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", newErr(CodeToolMissing, "%s not found in /usr/lib/postgresql/*/bin or on PATH; install the PostgreSQL client or set backup.pg_bin_dir", name)
	}
	return p, nil
}

var versionDirRE = regexp.MustCompile(`/postgresql/(\d+)/bin$`)

func pgVersion(dir string) int {
	m := versionDirRE.FindStringSubmatch(dir)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// connArgs turns the pool's connection configuration into what libpq
// programs take: a connection string without the password (argv is
// visible to every local user) and the password in PGPASSWORD.
func connArgs(cfg *pgx.ConnConfig) (dsn string, env []string) {
	env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "PGAPPNAME=vmpulse-backup")
	orig := cfg.ConnString()
	if cfg.Password != "" {
		env = append(env, "PGPASSWORD="+cfg.Password)
	}
	if u, err := url.Parse(orig); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		q.Del("password")
		// pgx-only parameters libpq refuses.
		for k := range q {
			if strings.HasPrefix(k, "pool_") || k == "default_query_exec_mode" || k == "statement_cache_capacity" || k == "description_cache_capacity" {
				q.Del(k)
			}
		}
		u.RawQuery = q.Encode()
		return u.String(), env
	}
	// key=value form: drop the password and pgx-only keys.
	var kept []string
	for _, f := range strings.Fields(orig) {
		k, _, _ := strings.Cut(f, "=")
		if k == "password" || strings.HasPrefix(k, "pool_") {
			continue
		}
		kept = append(kept, f)
	}
	return strings.Join(kept, " "), env
}

// limitedBuffer keeps the first n bytes written to it (a program's
// stderr, for error messages).
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}
