import { describe, expect, it } from 'vitest';
import { connectedShare, place } from '../src/lib/timeline';

const at = (m: number) => new Date(m * 60_000).toISOString();

describe('site timeline', () => {
  it('places stretches as shares of the range, clipped, open ones to the end', () => {
    expect(place({ from: at(10), to: at(20) }, 0, 100 * 60_000)).toEqual({ left: 10, width: 10 });
    expect(place({ from: at(-50), to: at(30) }, 0, 100 * 60_000)).toEqual({ left: 0, width: 30 });
    expect(place({ from: at(90), to: null }, 0, 100 * 60_000)).toEqual({ left: 90, width: 10 });
    expect(place({ from: at(200), to: at(300) }, 0, 100 * 60_000)).toBeNull();
    expect(place({ from: at(50), to: at(50) }, 0, 100 * 60_000)?.width).toBe(0.3);
  });

  it('counts overlapping sessions once', () => {
    const share = connectedShare(
      [
        { from: at(0), to: at(30) },
        { from: at(20), to: at(50) },
        { from: at(80), to: null },
      ],
      0,
      100 * 60_000,
    );
    expect(share).toBeCloseTo(0.7, 9);
  });
});
