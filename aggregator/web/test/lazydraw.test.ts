import { describe, expect, it } from 'vitest';
import { onScreen } from '../src/lib/lazydraw';

describe('lazy drawing', () => {
  it('tells a box on screen from one above or below it', () => {
    expect(onScreen({ top: 0, bottom: 200 }, 800)).toBe(true);
    expect(onScreen({ top: 700, bottom: 940 }, 800)).toBe(true);
    expect(onScreen({ top: 800, bottom: 1040 }, 800)).toBe(false);
    expect(onScreen({ top: -300, bottom: 0 }, 800)).toBe(false);
    expect(onScreen({ top: -100, bottom: 50 }, 800)).toBe(true);
  });
});
