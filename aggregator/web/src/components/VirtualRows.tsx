import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/**
 * VirtualRows renders only the rows in view (plus a margin) of a long list
 * of fixed-height rows, so a 500-row page costs what 30 rows cost.
 */
export function VirtualRows<T>({
  items,
  rowHeight,
  height,
  render,
  label,
  onRange,
}: {
  items: readonly T[];
  rowHeight: number;
  height: number;
  render: (item: T, index: number) => ComponentChildren;
  label: string;
  /** Called with the indexes of the rows drawn, [first, last), whenever they change. */
  onRange?: (first: number, last: number) => void;
}) {
  const ref = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.scrollTop = 0;
    setTop(0);
  }, [items]);
  const overscan = 8;
  const first = Math.max(0, Math.floor(top / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + overscan);
  useEffect(() => onRange?.(first, last), [first, last, items]);
  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i++) rows.push(render(items[i]!, i));
  return (
    <div
      ref={ref}
      class="vrows"
      role="rowgroup"
      aria-label={label}
      style={{ maxHeight: height + 'px' }}
      onScroll={(e) => setTop((e.currentTarget as HTMLDivElement).scrollTop)}
      tabIndex={0}
    >
      <div class="vrows-inner" style={{ height: items.length * rowHeight + 'px' }}>
        <div class="vrows-window" style={{ transform: `translateY(${first * rowHeight}px)` }}>
          {rows}
        </div>
      </div>
    </div>
  );
}
