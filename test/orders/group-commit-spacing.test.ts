import { expect } from 'chai';
import pg from 'pg';
import { startSystem, type Parties, type TestSystem } from '../support/system.ts';

/** Sends one placement, then `more` placements `gapMs` apart (each sent without waiting for the ones before). */
async function placeInAStream(sys: TestSystem, p: Parties, more: number, gapMs: number): Promise<string[]> {
  const first = await sys.placeOrder(p);
  const rest: Promise<{ id: string }>[] = [];
  for (let i = 0; i < more; i++) {
    rest.push(sys.placeOrder(p));
    await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  return [first.id, ...(await Promise.all(rest)).map((o) => o.id)];
}

/** How many statements wrote these orders' placements: the journal's transaction ids (one per group commit). */
async function statementsOf(inspect: pg.Pool, orderIds: readonly string[]): Promise<number> {
  const { rows } = await inspect.query<{ n: number }>('SELECT count(DISTINCT tx)::int AS n FROM order_journal WHERE order_id = ANY($1::uuid[]) AND seq = 1', [orderIds]);
  return rows[0]!.n;
}

/**
 * GROUP_COMMIT_SPACING_MS: while commands keep coming, a replica starts at most one statement
 * writing them per spacing, so commands that arrive one at a time share a statement; the first
 * after a quiet spell goes at once. Placements sent 25 ms apart each go alone at the default; with
 * a spacing of 400 ms, the ones sent within it of the first statement share the next one.
 */
describe('group commit spacing (GROUP_COMMIT_SPACING_MS)', function () {
  this.timeout(60_000);
  const systems: { sys: TestSystem; inspect: pg.Pool; p: Parties }[] = [];
  const start = async (name: string, env: Record<string, string>) => {
    const sys = await startSystem({ name, env });
    const entry = { sys, inspect: new pg.Pool({ connectionString: sys.databaseUrl, max: 1 }), p: await sys.newParties() };
    systems.push(entry);
    return entry;
  };
  after(async () => {
    for (const { sys, inspect } of systems) {
      await inspect.end();
      await sys.close();
    }
  });

  it('with a spacing, placements that arrive one at a time after the first share one statement', async () => {
    const { sys, inspect, p } = await start('spacing', { GROUP_COMMIT_SPACING_MS: '400' });
    const started = performance.now();
    const ids = await placeInAStream(sys, p, 4, 25);
    expect(ids).to.have.length(5);
    // The first went alone; the four sent within the spacing of its statement went in the next one.
    expect(await statementsOf(inspect, ids)).to.equal(2);
    expect(performance.now() - started).to.be.at.least(395);
  });

  it('without one (the default), the same stream goes as it comes: a statement for each', async () => {
    const { sys, inspect, p } = await start('no-spacing', {});
    const ids = await placeInAStream(sys, p, 4, 25);
    // Nothing else is written on this system: a placement meets another's statement under way only on a stalled machine.
    expect(await statementsOf(inspect, ids)).to.be.at.least(4);
  });
});
