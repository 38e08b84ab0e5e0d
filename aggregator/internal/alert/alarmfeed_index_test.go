package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan tree.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Index     string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

// scans lists the nodes of p's tree that read relation (its partitions
// too: their names start with it).
func (p planNode) scans(relation string) []planNode {
	var out []planNode
	if strings.HasPrefix(p.Relation, relation) {
		out = append(out, p)
	}
	for _, c := range p.Plans {
		out = append(out, c.scans(relation)...)
	}
	return out
}

// explainPlan runs EXPLAIN (FORMAT JSON) of query on conn and returns the
// plan's root.
func explainPlan(ctx context.Context, t *testing.T, conn *pgxpool.Conn, query string, args ...any) (planNode, string) {
	t.Helper()
	var raw []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&raw); err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("explain output %s: %v", raw, err)
	}
	return doc[0].Plan, string(raw)
}

// TestAlarmCatchUpUsesIndex: the alarm mirror's catch-up read
// (alarmCatchUpSQL) reads vcenter_events through an index on received_at
// (vcenter_events_alarm_idx, migration 014: partial, on the alarm types),
// not by scanning the table, on a table of realistic size (a week of a
// busy site's events, 1 % of them alarms) with fresh statistics.
//
// The index's predicate names the types, so only a plan made with the
// statement's values can use it (a generic plan cannot prove that
// type = ANY($2) implies it; nor can it use any index here, since it
// estimates received_at > $1 at a third of the table). The test checks the
// plan with the values, that alarmTypes still match the predicate (a type
// added to one and not the other would scan), and that PostgreSQL's plan
// cache keeps making such plans for pgx's prepared statement, executed as
// the mirror executes it, rather than switching to the generic one.
func TestAlarmCatchUpUsesIndex(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: tlog(t)})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	defer st.Close()
	const rows = 200_000
	// A week of events, one every 3 s, received 2 s after they happened;
	// every 100th is an alarm event, the rest the usual mix.
	if _, err := st.Pool().Exec(ctx, fmt.Sprintf(`
		INSERT INTO vcenter_events (site, source, key, type, time, entity_kind, entity_id, message, received_at)
		SELECT 'site-'||(i %% 3), 'vc'||(i %% 3)||'.example', i,
		       CASE WHEN i %% 100 = 0 THEN (ARRAY['AlarmStatusChangedEvent','AlarmClearedEvent','TriggeredAlarmState'])[1 + (i/100) %% 3]
		            ELSE (ARRAY['UserLoginSessionEvent','UserLogoutSessionEvent','TaskEvent','VmPoweredOnEvent','VmReconfiguredEvent','DrsVmMigratedEvent'])[1 + i %% 6] END,
		       now() - (%[1]d - i) * interval '3 seconds',
		       'vm', 'vm-'||(i %% 1000), 'event '||i,
		       now() - (%[1]d - i) * interval '3 seconds' + interval '2 seconds'
		FROM generate_series(1, %[1]d) AS i`, rows)); err != nil {
		t.Fatalf("fill vcenter_events: %v", err)
	}
	if _, err := st.Pool().Exec(ctx, `ANALYZE vcenter_events`); err != nil {
		t.Fatal(err)
	}
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()

	// The cursor as a running mirror has it: a minute ago, less the
	// lookback.
	since := time.Now().Add(-time.Minute - alarmLookback)
	plan, raw := explainPlan(ctx, t, conn, alarmCatchUpSQL, since, alarmTypes)
	scans := plan.scans("vcenter_events")
	if len(scans) == 0 {
		t.Fatalf("no scan of vcenter_events in %s", raw)
	}
	for _, s := range scans {
		if s.NodeType == "Seq Scan" || !strings.Contains(s.IndexCond, "received_at") {
			t.Errorf("%s of %s (index %q, cond %q); want an index scan on received_at. Plan: %s",
				s.NodeType, s.Relation, s.Index, s.IndexCond, raw)
		}
	}

	// Executed as the mirror does (pgx prepares the statement once per
	// connection): every execution is planned with its values.
	const runs = 10
	var got int
	for range runs {
		r, err := conn.Query(ctx, alarmCatchUpSQL, since, alarmTypes)
		if err != nil {
			t.Fatal(err)
		}
		got = 0
		for r.Next() {
			got++
		}
		if r.Close(); r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	// The newest event (i = rows) is an alarm; the one before it, 5
	// minutes older, is before the cursor.
	if got != 1 {
		t.Errorf("the catch-up read %d events; want the 1 alarm event of the last 3 minutes", got)
	}
	var generic, custom int64
	if err := conn.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`,
		alarmCatchUpSQL).Scan(&generic, &custom); err != nil {
		t.Fatalf("the catch-up's prepared statement: %v", err)
	}
	if generic != 0 || custom < runs {
		t.Errorf("the plan cache made %d generic and %d custom plans in %d runs; want custom plans only", generic, custom, runs)
	}
}
