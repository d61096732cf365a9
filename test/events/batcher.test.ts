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
