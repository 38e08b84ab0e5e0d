import { describe, expect, it } from 'vitest';
import { daysToFull, heatLevel, readyPercent, slopePerDay } from '../src/lib/capacity';

const DAY = 86_400_000;

describe('capacity', () => {
  it('fits growth per day and ignores the gaps', () => {
    const ts = [0, 1, 2, 3, 4, 5].map((d) => d * DAY);
    expect(slopePerDay(ts, [100, 110, null, 130, null, 150])).toBeCloseTo(10, 9);
  });

  it('needs three points over at least a day', () => {
    expect(slopePerDay([0, DAY], [1, 2])).toBeNull();
    expect(slopePerDay([0, 1000, 2000], [1, 2, 3])).toBeNull();
    expect(slopePerDay([0, DAY, 2 * DAY], [null, null, 3])).toBeNull();
  });

  it('counts the days until full', () => {
    expect(daysToFull(1000, 10)).toBe(100);
    expect(daysToFull(0, 10)).toBe(0);
    expect(daysToFull(1000, 0)).toBeNull();
    expect(daysToFull(1000, -5)).toBeNull();
    expect(daysToFull(null, 5)).toBeNull();
  });

  it('turns CPU ready into percent of the cores', () => {
    // 2 000 ms ready in a 20 s sample of 1 core: 10%; over 4 cores: 2.5%.
    expect(readyPercent(2000, 1)).toBe(10);
    expect(readyPercent(2000, 4)).toBe(2.5);
    expect(readyPercent(2000, 0)).toBe(0);
  });

  it('shades the heat grid between its marks', () => {
    expect(heatLevel(null, 2, 10)).toBe(-1);
    expect(heatLevel(1, 2, 10)).toBe(0);
    expect(heatLevel(3, 2, 10)).toBe(1);
    expect(heatLevel(9.9, 2, 10)).toBe(3);
    expect(heatLevel(10, 2, 10)).toBe(4);
  });
});
