import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's collector, reachable without starting node with --expose-gc: a scavenge with `{ type: 'minor' }`. */
export function collector(): (opts?: { type: 'minor' | 'major' }) => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
}

const oldSpaceUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;

/**
 * How much V8's old generation grew over `run` (which should scavenge as it goes), measured after
 * a full collection. A major collection inside the window would free what was promoted and hide
 * it, and V8 may start one of its own at any time: such a window is measured again, three times
 * at most. `majors` is the count of major collections in the last window (0 when it counts).
 */
export async function oldGenerationGrowth(run: () => void | Promise<void>): Promise<{ grown: number; majors: number }> {
  const gc = collector();
  let majors = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors += 1;
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    let grown = 0;
    for (let window = 0; window < 3; window++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
      majors = 0;
      const before = oldSpaceUsed();
      await run();
      await new Promise((resolve) => setTimeout(resolve, 10));
      grown = oldSpaceUsed() - before;
      if (majors === 0) break;
    }
    return { grown, majors };
  } finally {
    observer.disconnect();
  }
}
