package backup_test

import (
	"context"
	"os/exec"
	"regexp"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
)

// The backup setting (PUT /system/settings) sets pg_dump's compression of
// every backup from the next one on, over the configured level, on the
// replica that runs it: the dump's header records the level used.
func TestBackupCompressionSetting(t *testing.T) {
	f := newFixture(t, nil) // configured: -Z 1
	ctx := context.Background()
	if got := f.svc.ConfiguredCompression(); got != 1 {
		t.Fatalf("ConfiguredCompression = %d", got)
	}
	pgRestore, err := backup.FindTool("", "pg_restore")
	if err != nil {
		t.Fatal(err)
	}
	level := func() string {
		t.Helper()
		bk, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindConfig, By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(pgRestore, "-l", f.svc.Path(bk)).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_restore -l: %v: %s", err, out)
		}
		m := regexp.MustCompile(`(?m)^;\s+Compression: (\S+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no compression in the dump's header: %s", out)
		}
		return string(m[1])
	}
	base := level()
	if err := jobs.WriteSetting(ctx, f.pool, jobs.SettingBackup, jobs.BackupDoc{Compression: 7}, "test"); err != nil {
		t.Fatal(err)
	}
	set := level()
	if base != "1" || set != "7" {
		t.Errorf("dump compression: %s configured, %s after setting 7", base, set)
	}
}
