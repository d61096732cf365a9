import { EFFECT_REFUSED, POSITION_MOVED } from './errors.ts';
import type { Effect } from './types.ts';

/** The `src` of the rows of a composed statement's read. */
export const READ_SRC = -2;

/** A statement that must touch exactly `expect` rows, or the batch read something that moved. */
export interface Guard {
  text: string;
  params: readonly unknown[];
  expect: number;
}

/**
 * One statement for a whole batch: every consumer's effects as CTEs, then the guards (positions,
 * owed orders), each of which must touch exactly the rows it expects. If one does not (another
 * delivery moved first), or an effect's guard fails, `baedal_fail()` raises and nothing of the
 * statement remains. With `read`, a SELECT whose rows come back too (src READ_SRC). Returns the text, the parameters, and which `src` value in the result carries
 * the rows of each returning effect.
 */
export function compose(
  effects: readonly Effect[],
  guards: readonly Guard[],
  read?: { text: string; params: readonly unknown[] },
): { text: string; params: unknown[]; returning: number[] } {
  const params: unknown[] = [];
  const add = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const ctes: string[] = [];
  const outputs: string[] = [];
  const returning: number[] = [];
  const cte = (name: string, text: string, values: readonly unknown[]) => {
    const offset = params.length;
    params.push(...values);
    ctes.push(`${name} AS (${text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`)})`);
  };
  effects.forEach((effect, i) => {
    cte(`e${i}`, effect.text, effect.params);
    if (effect.returning) {
      returning.push(i);
      outputs.push(`SELECT ${i} AS src, to_jsonb(e${i}.*) AS row FROM e${i}`);
    }
    if (effect.failIf) {
      outputs.push(`SELECT -1 AS src, to_jsonb(baedal_fail('${EFFECT_REFUSED}', ${add(effect.failIf.message)})) AS row FROM e${i} WHERE ${effect.failIf.where}`);
    }
  });
  const checks: string[] = [];
  guards.forEach((guard, i) => {
    cte(`g${i}`, guard.text, guard.params);
    checks.push(`(SELECT count(*) FROM g${i}) <> ${add(guard.expect)}::int`);
  });
  if (checks.length > 0) {
    outputs.push(
      `SELECT -1 AS src, to_jsonb(baedal_fail('${POSITION_MOVED}', 'another delivery moved a position or an owed order first')) AS row WHERE ${checks.join(' OR ')}`,
    );
  }
  if (read) {
    // A read in the same snapshot (it sees nothing the statement writes): its rows come back as src READ_SRC.
    cte('r0', read.text, read.params);
    outputs.push(`SELECT ${READ_SRC} AS src, to_jsonb(r0.*) AS row FROM r0`);
  }
  if (outputs.length === 0) outputs.push('SELECT -1 AS src, NULL::jsonb AS row WHERE false');
  return { text: `WITH ${ctes.join(',\n')}\n${outputs.join('\nUNION ALL\n')}`, params, returning };
}

export const json = (rows: unknown[]) => JSON.stringify(rows);
