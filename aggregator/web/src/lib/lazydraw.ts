// Drawing a long list of heavy cards in pieces: the ones on screen at
// once (before the first paint), the rest when they come within a screen
// of the viewport. The overview's 50 site tiles are ~1,700 elements:
// drawn in one task they block the main thread for hundreds of
// milliseconds on a phone. (Drawing the rest in idle time, a few at a
// time, was tried: Lighthouse's phone score fell from 95 to 91, the extra
// tasks counting as blocking time.)
import { useLayoutEffect, useState, type MutableRef } from 'preact/hooks';

type Draw = () => void;

/** onScreen tells whether a box (a getBoundingClientRect) is inside a viewport of that height. */
export function onScreen(r: { top: number; bottom: number }, viewportHeight: number): boolean {
  return r.bottom > 0 && r.top < viewportHeight;
}

let observer: IntersectionObserver | null = null;
const watched = new Map<Element, Draw>();

/** near calls draw once el comes within a screen's height of the viewport. */
function near(el: Element, draw: Draw): () => void {
  if (typeof IntersectionObserver !== 'function') {
    draw();
    return () => undefined;
  }
  observer ??= new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        const d = watched.get(e.target);
        watched.delete(e.target);
        observer?.unobserve(e.target);
        d?.();
      }
    },
    { rootMargin: '0px 0px 100% 0px' },
  );
  watched.set(el, draw);
  observer.observe(el);
  return () => {
    watched.delete(el);
    observer?.unobserve(el);
  };
}

/**
 * useLazyDraw says whether the element in ref is to be drawn in full. It
 * is, before the first paint, when the element is on screen; otherwise
 * once it scrolls within a screen of the viewport. Once drawn it stays
 * drawn.
 */
export function useLazyDraw(ref: MutableRef<Element | null>): boolean {
  const [drawn, setDrawn] = useState(false);
  useLayoutEffect(() => {
    const el = ref.current;
    if (drawn || !el) return;
    // A state change in a layout effect renders again before the browser paints: no shift.
    if (onScreen(el.getBoundingClientRect(), window.innerHeight)) {
      setDrawn(true);
      return;
    }
    return near(el, () => setDrawn(true));
  }, [drawn]);
  return drawn;
}
