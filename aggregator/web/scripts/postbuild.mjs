// After `vite build`: write a .gz and a .br beside every text asset (the Go
// handler serves them to clients that accept them), then check the size
// budget: the JavaScript a first visit loads (the entry script and what
// it preloads), gzipped, must stay within BUDGET_KB.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const BUDGET_KB = 60; // console_initial_js_kb_gz
const ROUTE_BUDGET_KB = 30; // each lazily loaded chunk
const dist = fileURLToPath(new URL('../../internal/console/dist/', import.meta.url));
const compressible = /\.(js|css|html|svg|json|txt|map)$/;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

const gzSize = new Map();
for (const file of walk(dist)) {
  if (!compressible.test(file)) continue;
  const raw = readFileSync(file);
  const gz = gzipSync(raw, { level: 9 });
  const br = brotliCompressSync(raw, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length },
  });
  // Only keep an encoding that is smaller than the file itself.
  if (gz.length < raw.length) writeFileSync(file + '.gz', gz);
  if (br.length < raw.length) writeFileSync(file + '.br', br);
  gzSize.set(relative(dist, file), Math.min(gz.length, raw.length));
}

const html = readFileSync(join(dist, 'index.html'), 'utf8');
const initial = new Set();
for (const m of html.matchAll(/<script[^>]*\bsrc="\/([^"]+\.js)"/g)) initial.add(m[1]);
for (const m of html.matchAll(/<link[^>]*rel="modulepreload"[^>]*href="\/([^"]+\.js)"/g)) initial.add(m[1]);
if (initial.size === 0) {
  console.error('postbuild: no entry script found in index.html');
  process.exit(1);
}
const kb = (n) => Math.round((n / 1024) * 10) / 10;
const initialBytes = [...initial].reduce((s, f) => s + (gzSize.get(f) ?? 0), 0);
const css = [...html.matchAll(/<link[^>]*rel="stylesheet"[^>]*href="\/([^"]+\.css)"/g)].reduce((s, m) => s + (gzSize.get(m[1]) ?? 0), 0);
const chunks = [...gzSize].filter(([f]) => f.endsWith('.js') && !initial.has(f));
const largest = chunks.reduce((a, b) => (b[1] > a[1] ? b : a), ['', 0]);

console.log(`figure: console_initial_js_kb_gz ${kb(initialBytes)} KB (budget ${BUDGET_KB}: ${[...initial].join(', ')})`);
console.log(`figure: console_initial_css_kb_gz ${kb(css)} KB`);
console.log(`figure: console_route_chunk_max_kb_gz ${kb(largest[1])} KB (${largest[0]}; goal ${ROUTE_BUDGET_KB})`);
for (const [f, n] of chunks.sort()) console.log(`  chunk ${f} ${kb(n)} KB gz`);
if (initialBytes > BUDGET_KB * 1024) {
  console.error(`postbuild: the initial JavaScript is ${kb(initialBytes)} KB gzipped, over the ${BUDGET_KB} KB budget`);
  process.exit(1);
}
if (largest[1] > ROUTE_BUDGET_KB * 1024) {
  console.error(`postbuild: chunk ${largest[0]} is ${kb(largest[1])} KB gzipped, over the ${ROUTE_BUDGET_KB} KB route budget`);
  process.exit(1);
}
