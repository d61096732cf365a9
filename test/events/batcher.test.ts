import { expect } from 'chai';
import { Batcher } from '../../src/db/batcher.ts';

/** Group commit's batching, on its own (pure code: the statement is a function here). */
describe('Batcher', () => {
  /** A "statement" that records each batch it got and fails any batch holding a bad input. */
  function statement() {
    const batches: number[][] = [];
    const run = async (inputs: number[]) => {
      batches.push([...inputs]);
      if (inputs.some((n) => n < 0)) throw new Error(`bad input in [${inputs.join(', ')}]`);
      return inputs.map((n) => n * 10);
    };
    return { batches, run };
  }

  it('sends the requests of one moment as one batch, each getting its own answer', async () => {
    const { batches, run } = statement();
    const batcher = new Batcher(run, { maxBatch: 10, maxInFlight: 1 });
    expect(await Promise.all([1, 2, 3].map((n) => batcher.submit(n)))).to.deep.equal([10, 20, 30]);
    expect(batches).to.deep.equal([[1, 2, 3]]);
  });

  it('never puts two requests with the same key in one batch', async () => {
    const { batches, run } = statement();
    const batcher = new Batcher(run, { maxBatch: 10, maxInFlight: 1, key: (n: number) => String(n % 2) });
    expect(await Promise.all([1, 3, 2].map((n) => batcher.submit(n)))).to.deep.equal([10, 30, 20]);
    expect(batches).to.deep.equal([[1, 2], [3]]);
  });

  it('with alone, a failing batch is run again one request at a time: the bad request fails, the others succeed', async () => {
    const { batches, run } = statement();
    const batcher = new Batcher(run, { maxBatch: 10, maxInFlight: 1, alone: true });
    const outcomes = await Promise.allSettled([1, -2, 3].map((n) => batcher.submit(n)));
    expect(outcomes.map((o) => o.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
    expect(outcomes.filter((o) => o.status === 'fulfilled').map((o) => (o as PromiseFulfilledResult<number>).value)).to.deep.equal([10, 30]);
    expect(((outcomes[1] as PromiseRejectedResult).reason as Error).message).to.equal('bad input in [-2]');
    expect(batches).to.deep.equal([[1, -2, 3], [1], [-2], [3]]);
  });

  it('without alone, a failing batch fails every request in it', async () => {
    const { run } = statement();
    const batcher = new Batcher(run, { maxBatch: 10, maxInFlight: 1 });
    const outcomes = await Promise.allSettled([1, -2].map((n) => batcher.submit(n)));
    expect(outcomes.map((o) => o.status)).to.deep.equal(['rejected', 'rejected']);
  });
});

describe('Batcher with spacingMs', () => {
  it('sends the first batch at once, then one batch per spacing at most, gathering what arrives meanwhile', async () => {
    const sent: { inputs: number[]; at: number }[] = [];
    const start = performance.now();
    const batcher = new Batcher(
      async (inputs: number[]) => {
        sent.push({ inputs: [...inputs], at: performance.now() - start });
        return inputs;
      },
      { maxBatch: 10, maxInFlight: 2, spacingMs: 300 },
    );
    const first = batcher.submit(1);
    await first;
    // Two slots are free, yet these wait for the spacing and share one statement.
    const second = batcher.submit(2);
    await new Promise((resolve) => setImmediate(resolve));
    const third = batcher.submit(3);
    expect(await Promise.all([second, third])).to.deep.equal([2, 3]);
    expect(sent.map((s) => s.inputs)).to.deep.equal([[1], [2, 3]]);
    // The first went without waiting a spacing; the second waited for it (timers may fire a millisecond early).
    expect(sent[0]!.at).to.be.below(200);
    expect(sent[1]!.at - sent[0]!.at).to.be.at.least(295);
  });
});
