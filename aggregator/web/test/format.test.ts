import { describe, expect, it } from 'vitest';
import {
  formatByteRate,
  formatBytes,
  formatDuration,
  formatMemoryMB,
  formatMetric,
  formatNumber,
  formatPercent,
  formatRelative,
} from '../src/lib/format';

describe('formatters', () => {
  it('formats numbers per locale', () => {
    expect(formatNumber(1234567.891, 'en')).toBe('1,234,567.9');
    expect(formatNumber(1234567.891, 'ja-JP')).toBe('1,234,567.9');
    expect(formatNumber(0.04, 'en', 2)).toBe('0.04');
  });

  it('formats percents given in percent', () => {
    expect(formatPercent(42.5, 'en')).toBe('42.5%');
    expect(formatPercent(100, 'zh-CN')).toBe('100%');
  });

  it('scales bytes in SI steps', () => {
    expect(formatBytes(0, 'en')).toBe('0 byte');
    expect(formatBytes(999, 'en')).toBe('999 byte');
    expect(formatBytes(1500, 'en')).toBe('1.5 kB');
    expect(formatBytes(12_300_000, 'en')).toBe('12 MB');
    expect(formatBytes(2.5e12, 'en')).toBe('2.5 TB');
    expect(formatByteRate(2_000_000, 'en')).toBe('2 MB/s');
  });

  it('shows vSphere memory sizes', () => {
    expect(formatMemoryMB(512, 'en')).toBe('512 MB');
    expect(formatMemoryMB(8192, 'en')).toBe('8 GB');
    expect(formatMemoryMB(1536, 'en')).toBe('1.5 GB');
  });

  it('keeps the two largest units of a duration', () => {
    expect(formatDuration(450, 'en')).toBe('450 ms');
    expect(formatDuration(45_000, 'en')).toBe('45 sec');
    expect(formatDuration(3_600_000 * 2 + 60_000 * 5 + 7000, 'en')).toBe('2 hr 5 min');
    expect(formatDuration(3_600_000 * 2 + 7000, 'en')).toBe('2 hr');
    expect(formatDuration(86_400_000 * 3 + 3_600_000, 'en')).toBe('3 days 1 hr');
    // CJK: the locale's own units and no spaces where it uses none
    expect(formatDuration(3_600_000 + 60_000 * 30, 'zh-CN')).toBe('1小时30分钟');
    expect(formatDuration(3_600_000 + 60_000 * 30, 'ja-JP')).toMatch(/^1 時間 ?30 分$/);
  });

  it('says how long ago', () => {
    const now = new Date('2025-06-01T12:00:00Z');
    expect(formatRelative('2025-06-01T11:55:00Z', now, 'en')).toBe('5 minutes ago');
    expect(formatRelative('2025-06-01T12:00:00Z', now, 'en')).toBe('now');
    expect(formatRelative('2025-05-31T12:00:00Z', now, 'en')).toBe('yesterday');
    expect(formatRelative('2025-06-01T14:00:00Z', now, 'en')).toBe('in 2 hours');
    expect(formatRelative('2025-06-01T11:55:00Z', now, 'ja-JP')).toBe('5 分前');
  });

  it('formats metric values by unit', () => {
    expect(formatMetric(12.34, '%', 'en')).toBe('12.3%');
    expect(formatMetric(2048, 'KBps', 'en')).toBe('2 MB/s');
    expect(formatMetric(3.25, 'ms', 'en')).toBe('3.3 ms');
    expect(formatMetric(null, '%', 'en')).toBe('–');
    expect(formatMetric(Number.NaN, '%', 'en')).toBe('–');
    expect(formatMetric(7, 'num', 'en')).toBe('7');
  });
});
