import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/log.ts';
import { wakeQueueName, WakeUps, type Wake } from '../../src/actors/wake-ups.ts';
import { eventually, removeQueueKeys, TEST_REDIS_URL } from '../support/system.ts';

/**
 * The producer's side of the event bus, on the real Redis: wake-ups to another owner are held to
 * one per `remoteEveryMs` (the first at once), the partitions held back travel together at the end
 * of the interval, and the replica's own partitions are woken in-process every linger.
 */
describe('event wake-ups to other owners', () => {
  const prefix = `{wake-test-${randomUUID().slice(0, 8)}}`;
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const owners: Record<number, string> = { 1: 'r-self', 2: 'r-other', 3: 'r-other', 4: 'r-third' };
  const queues: Queue<Wake>[] = [];
  const jobsOf = async (holder: string) => {
    const q = new Queue<Wake>(wakeQueueName(holder), { connection: redis, prefix });
    queues.push(q);
    return (await q.getJobs(['waiting'])).map((j) => ({ parts: j.data.parts, at: j.timestamp })).sort((a, b) => a.at - b.at);
  };

  after(async () => {
    await Promise.all(queues.map((q) => q.close()));
    redis.disconnect();
    await removeQueueKeys(prefix);
  });

  it('sends another owner one job at once, then one per interval with every partition held back; its own partitions are woken in-process', async () => {
    const woken: number[][] = [];
    const wakeUps = new WakeUps({
      redisUrl: TEST_REDIS_URL,
      prefix,
      lingerMs: 5,
      remoteEveryMs: 400,
      log: createLogger('silent'),
      holder: 'r-self',
      ownerOf: (p) => owners[p],
      wakeHere: (parts) => woken.push(parts),
    });
    await wakeUps.connect();
    try {
      const started = Date.now();
      wakeUps.announce(2);
      wakeUps.announce(1);
      await eventually(async () => expect(await jobsOf('r-other')).to.have.length(1), 'the first wake-up', 2000);
      // Within the interval: held back, however many commits announce them.
      for (let i = 0; i < 10; i++) {
        wakeUps.announce(i % 2 === 0 ? 2 : 3);
        wakeUps.announce(1);
        await new Promise((resolve) => setImmediate(resolve));
      }
      // Exactly one more job (eleven announcements sent at once would never make two), at the interval's end.
      await eventually(async () => expect(await jobsOf('r-other')).to.have.length(2), 'the held-back wake-up', 2000);
      const [first, second] = await jobsOf('r-other');
      expect(first!.parts).to.deep.equal([2]);
      expect(second!.parts).to.deep.equal([2, 3]);
      expect(second!.at - first!.at, 'the second waited for the interval').to.be.at.least(350);
      expect(Date.now() - started).to.be.below(5000);
      // Another owner has an interval of its own; this replica's partitions never go through Redis.
      wakeUps.announce(4);
      await eventually(async () => expect(await jobsOf('r-third')).to.have.length(1), "the third owner's wake-up", 2000);
      expect(await jobsOf('r-self')).to.deep.equal([]);
      expect(woken.length).to.be.at.least(2);
      expect(woken.every((parts) => parts.length === 1 && parts[0] === 1)).to.equal(true);
    } finally {
      await wakeUps.close(1000);
    }
  });

  it('closing sends what it held back, so no hint is dropped on the way out', async () => {
    const wakeUps = new WakeUps({
      redisUrl: TEST_REDIS_URL,
      prefix,
      lingerMs: 0,
      remoteEveryMs: 60_000,
      log: createLogger('silent'),
      holder: 'r-closing',
      ownerOf: () => 'r-late',
      wakeHere: () => undefined,
    });
    await wakeUps.connect();
    wakeUps.announce(7);
    await eventually(async () => expect(await jobsOf('r-late')).to.have.length(1), 'the first wake-up', 2000);
    wakeUps.announce(8);
    const closing = Date.now();
    await wakeUps.close(2000);
    const jobs = await jobsOf('r-late');
    expect(jobs.map((j) => j.parts)).to.deep.equal([[7], [8]]);
    expect(jobs[1]!.at, 'partition 8 was held until the close').to.be.at.least(closing);
  });

  it('sends nothing to an owner that reads all its partitions by itself, and wakes it again once it stops', async () => {
    let reading = true;
    const wakeUps = new WakeUps({
      redisUrl: TEST_REDIS_URL,
      prefix,
      lingerMs: 0,
      remoteEveryMs: 0,
      log: createLogger('silent'),
      holder: 'r-writer',
      ownerOf: (p) => (p === 5 ? 'r-reading' : 'r-woken'),
      wakeHere: () => undefined,
      readsAnyway: (owner) => owner === 'r-reading' && reading,
    });
    await wakeUps.connect();
    try {
      wakeUps.announce(5);
      wakeUps.announce(6);
      // The owner that is not reading by itself is woken: once it has its job, the flush that would
      // have sent the other one has run too.
      await eventually(async () => expect(await jobsOf('r-woken')).to.have.length(1), 'the wake-up of the owner not reading by itself', 2000);
      expect(await jobsOf('r-reading'), 'an owner reading by itself is sent nothing').to.deep.equal([]);
      reading = false;
      wakeUps.announce(5);
      await eventually(async () => expect(await jobsOf('r-reading')).to.have.length(1), 'its wake-up once its promise ended', 2000);
      expect((await jobsOf('r-reading'))[0]!.parts).to.deep.equal([5]);
    } finally {
      await wakeUps.close(1000);
    }
  });
});
