import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import en from '../src/i18n/en.json';
import ja from '../src/i18n/ja-JP.json';
import zh from '../src/i18n/zh-CN.json';
import { format, pickLocale } from '../src/i18n';

const catalogs: Record<string, Record<string, string>> = { en, 'zh-CN': zh, 'ja-JP': ja };
const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : /\.tsx?$/.test(n) ? [p] : [];
  });
}
const srcDir = join(__dirname, '../src');

describe('message catalogs', () => {
  it('have the same keys', () => {
    const keys = Object.keys(en).sort();
    for (const [name, c] of Object.entries(catalogs)) expect(Object.keys(c).sort(), name).toEqual(keys);
  });

  it('have the same placeholders for each key, and no empty message', () => {
    for (const [key, msg] of Object.entries(en)) {
      for (const [name, c] of Object.entries(catalogs)) {
        expect(c[key]?.trim(), `${name} ${key}`).toBeTruthy();
        expect(placeholders(c[key] ?? ''), `${name} ${key}`).toEqual(placeholders(msg));
      }
    }
  });

  it('translate what English says (apart from names)', () => {
    const same = new Set(['app.name', 'app.title', 'lang.en', 'lang.zh-CN', 'lang.ja-JP', 'site.agentsConnected', 'chart.gapItem', 'entity.chartTitle']);
    for (const [key, msg] of Object.entries(en)) {
      if (same.has(key) || /^(VMware Tools|vCPU)$/.test(msg)) continue;
      expect(zh[key as keyof typeof zh], `zh-CN ${key}`).not.toBe(msg);
      expect(ja[key as keyof typeof ja], `ja-JP ${key}`).not.toBe(msg);
    }
  });

  it('hold every key the source names', () => {
    const used = new Set<string>();
    for (const f of sources(srcDir)) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\bt\('([a-zA-Z0-9_.-]+)'[,)]/g)) used.add(m[1]!);
    }
    expect(used.size).toBeGreaterThan(100);
    for (const k of used) expect(en, k).toHaveProperty([k]);
  });

  it('leave no literal text in the markup', () => {
    // Every string a person reads comes from a catalog: no JSX text with
    // letters, and no literal aria-label, title, placeholder or alt.
    const found: string[] = [];
    for (const f of sources(srcDir).filter((p) => p.endsWith('.tsx'))) {
      const sf = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true, ts.ScriptKind.TSX);
      const visit = (n: ts.Node) => {
        if (ts.isJsxText(n) && /\p{L}/u.test(n.text)) found.push(`${f}: text "${n.text.trim()}"`);
        if (ts.isJsxAttribute(n) && n.initializer && ts.isStringLiteral(n.initializer) && /^(aria-label|title|placeholder|alt)$/.test(n.name.getText(sf))) {
          found.push(`${f}: ${n.getText(sf)}`);
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(found).toEqual([]);
  });
});

describe('locale choice', () => {
  it('picks the closest catalog', () => {
    expect(pickLocale(['zh-TW', 'en'])).toBe('zh-CN');
    expect(pickLocale(['ja'])).toBe('ja-JP');
    expect(pickLocale(['fr-FR', 'en-GB'])).toBe('en');
    expect(pickLocale(['fr'])).toBe('en');
    expect(pickLocale([])).toBe('en');
  });

  it('fills placeholders and leaves unknown ones visible', () => {
    expect(format('{n} VMs', { n: 3 })).toBe('3 VMs');
    expect(format('{a} and {b}', { a: 'x' })).toBe('x and {b}');
  });
});
