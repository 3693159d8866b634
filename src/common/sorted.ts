// Sorted arrays kept in order by binary search (the incremental renderers' ordered lists).

/**
 * Where x goes in a list sorted by cmp: after the elements equal to it (`upper`, the default: insertion
 * keeps arrival order among equals), or before them (`lower`: the first element not before x).
 */
export function sortedIndex<T>(list: readonly T[], x: T, cmp: (a: T, b: T) => number, bound: 'upper' | 'lower' = 'upper'): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = cmp(list[mid]!, x);
    if (c < 0 || (c === 0 && bound === 'upper')) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Inserts x into a list sorted by cmp, after the elements equal to it. */
export function insertSorted<T>(list: T[], x: T, cmp: (a: T, b: T) => number): void {
  list.splice(sortedIndex(list, x, cmp), 0, x);
}
