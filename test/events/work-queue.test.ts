import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { FAR_MS, WORK_QUEUE, WorkQueue } from '../../src/actors/work-queue.ts';
import { createLogger } from '../../src/log.ts';
import { eventually, removeQueueKeys, TEST_REDIS_URL } from '../support/system.ts';

interface Job {
  keys: string[];
  delay: number;
  timestamp: number;
}

/** The prompts of durable work as BullMQ jobs: what is due far ahead is held and shares a job per second. */
describe('work queue prompts', function () {
  this.timeout(20_000);
  const prefix = `{baedal-test-${randomUUID()}}`;
  const log = createLogger('silent', 'test');
  let work: WorkQueue | undefined;
  let reader: Queue;

  before(() => {
    reader = new Queue(WORK_QUEUE, { connection: { url: TEST_REDIS_URL }, prefix });
  });
  afterEach(async () => {
    await work?.close(2000);
    work = undefined;
    await reader.obliterate({ force: true });
  });
  after(async () => {
    await reader.close();
    await removeQueueKeys(prefix);
  });

  const jobs = async (): Promise<Job[]> =>
    (await reader.getJobs(['delayed', 'waiting'])).map((j) => ({ keys: (j.data as { keys: string[] }).keys, delay: j.opts.delay ?? 0, timestamp: j.timestamp }));
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

  it('timers due far ahead within the same second, prompted in separate ticks, share one delayed job that fires at the end of that second', async () => {
    work = new WorkQueue({ redisUrl: TEST_REDIS_URL, prefix, log });
    // Three commits' timers, each in a tick of its own, all due within one second a minute ahead.
    const second = Math.ceil((Date.now() + 60_000) / 1000) * 1000;
    work.schedule('timer', ['a'], new Date(second - 900));
    await tick();
    work.schedule('timer', ['b'], new Date(second - 500));
    await tick();
    work.schedule('timer', ['c', 'd'], new Date(second - 1));
    const found = await eventually(async () => {
      const all = await jobs();
      return all.length > 0 && all;
    }, 'the held prompts to be enqueued', 5000);
    expect(found, 'one job for the second').to.have.length(1);
    const job = found[0]!;
    expect(job.keys).to.deep.equal(['a', 'b', 'c', 'd']);
    // Due at the end of the second: never early, at most a second late.
    expect(job.timestamp + job.delay).to.be.within(second - 50, second + 50);
  });

  it('timers due in different seconds get a job each; a prompt due soon is not held', async () => {
    work = new WorkQueue({ redisUrl: TEST_REDIS_URL, prefix, log });
    const soon = new Date(Date.now() + 2000);
    work.schedule('timer', ['soon'], soon);
    const first = await eventually(async () => {
      const found = await jobs();
      return found.length > 0 && found;
    }, 'the near prompt to be enqueued', 900); // held prompts wait a second: this one came sooner
    expect(first).to.have.length(1);
    const near = first[0]!;
    expect(near.keys).to.deep.equal(['soon']);
    expect(near.timestamp + near.delay - soon.getTime()).to.be.within(-5, 100);

    const second = Math.ceil((Date.now() + 2 * FAR_MS) / 1000) * 1000;
    work.schedule('timer', ['x'], new Date(second - 10));
    work.schedule('timer', ['y'], new Date(second + 10));
    const far = await eventually(async () => {
      const found = (await jobs()).filter((j) => !j.keys.includes('soon'));
      return found.length === 2 && found;
    }, 'one job per second', 5000);
    expect(far.map((j) => j.keys).sort()).to.deep.equal([['x'], ['y']]);
  });

  it('closing enqueues the prompts still held', async () => {
    work = new WorkQueue({ redisUrl: TEST_REDIS_URL, prefix, log });
    work.schedule('timer', ['held'], new Date(Date.now() + 5 * 60_000));
    work.schedule('refund', ['now']);
    await work.close(2000);
    work = undefined;
    const found = await jobs();
    expect(found.map((j) => j.keys).sort()).to.deep.equal([['held'], ['now']]);
  });
});
