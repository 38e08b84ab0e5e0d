package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

// BenchmarkAppendVCenterEvents appends 50,000 pending vCenter events (20
// sites, as agents forward them) to the operation log in batches of 1,000
// and reports the rate: how far ahead of vCenter's event rate the appender
// stays (a busy vCenter logs a few events a second).
func BenchmarkAppendVCenterEvents(b *testing.B) {
	const events = 50_000
	st, err := store.Open(context.Background(), pgtest.NewDatabase(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	pool := st.Pool()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := pool.Exec(ctx, `
			INSERT INTO vcenter_events (site, source, key, type, time, username, message, entity_kind, entity_id, entity_name, received_at)
			SELECT 'site-' || (k % 20), 'vc-' || (k % 20), $1::bigint * $2 + k, 'VmPoweredOnEvent',
			       now() - interval '1 day' + k * interval '1 second', 'VSPHERE.LOCAL\ops', 'vm-' || k || ' on host-1 is powered on',
			       'vm', 'vm-' || k, 'vm-' || k, now() - interval '1 minute'
			FROM generate_series(1, $2) k`, i, events); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		rep, err := audit.AppendVCenterEvents(ctx, pool, audit.VCenterOptions{})
		took := time.Since(start)
		if err != nil || rep.Appended != events || rep.Pending != 0 {
			b.Fatalf("append: %+v, %v", rep, err)
		}
		fmt.Printf("figure: vcenter_audit_events_per_s %.0f events/s\n", float64(events)/took.Seconds())
	}
	b.StopTimer()
	v, err := audit.NewStore(pool).Verify(ctx)
	if err != nil || !v.OK {
		b.Fatalf("verify: %+v %v", v, err)
	}
}
