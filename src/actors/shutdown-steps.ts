import type { Logger } from '../log.ts';
import { within } from './queues.ts';

/**
 * Runs a shutdown's steps in order, each bounded by `graceMs` (plus 2 s); a step that fails or
 * times out is logged and the next one runs all the same.
 */
export async function runShutdownSteps(steps: readonly [string, () => Promise<unknown>][], graceMs: number, log: Logger): Promise<void> {
  for (const [name, step] of steps) {
    try {
      // Each step is bounded: a dependency that hangs must not hold the process past its budget.
      if ((await within(step(), graceMs + 2000)) === 'timeout') log.warn({ step: name }, 'shutdown step timed out');
    } catch (err) {
      log.error({ err, step: name }, 'shutdown step failed');
    }
  }
}
