// The ceilings the service sits under, measured on the same machine in the same run:
// PostgreSQL running one command's transaction shape, and BullMQ adding and processing jobs.
// (The third, a bare HTTP server under the same load generator, is run by scripts/bench.ts.)
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { postgresCpuSeconds, redisCpuSeconds } from './proc.ts';

export interface Ceiling {
  /** Operations per second over the measured window. */
  perS: number;
  operations: number;
  seconds: number;
  errors: number;
  /** CPU milliseconds per operation of the server behind it (PostgreSQL, Redis). */
  serverCpuMsPerOp: number;
}

/** A snapshot about the size of an order machine's persisted state. */
const SNAPSHOT = JSON.stringify({
  status: 'active',
  value: 'accepted',
  historyValue: {},
  context: {
    orderId: '00000000-0000-4000-8000-000000000000',
    customerId: 'customer-1',
    storeId: 'store-1',
    riderId: null,
    items: [
      { foodId: 'bibimbap', name: 'Bibimbap', qty: 2, price: 9000 },
      { foodId: 'tteokbokki', name: 'Tteokbokki', qty: 1, price: 6500 },
    ],
    total: 24500,
    address: { area: 'gangnam', line: '1 Teheran-ro' },
    chargeId: 'ch_00000000-0000-4000-8000-000000000000',
    refund: null,
    reason: null,
  },
  children: {},
  machine: { id: 'order', version: 1 },
});
const EVENT = JSON.stringify({ type: 'accepted', by: { role: 'store', sub: 'store-1' }, status: 'accepted' });

/**
 * Runs `op` from `clients` concurrent loops: a warm-up second, then `seconds` measured, with
 * `hooks` called as the measured window opens and closes.
 */
async function closedLoop(
  clients: number,
  seconds: number,
  op: (client: number) => Promise<void>,
  hooks: { onMeasure?: () => void; onEnd?: () => void } = {},
): Promise<{ operations: number; errors: number; seconds: number }> {
  let phase: 'warmup' | 'measure' | 'done' = 'warmup';
  let operations = 0;
  let errors = 0;
  let firstError: unknown;
  let started = 0;
  let ended = 0;
  let endTimer: NodeJS.Timeout | undefined;
  const warmupTimer = setTimeout(() => {
    phase = 'measure';
    started = performance.now();
    hooks.onMeasure?.();
    endTimer = setTimeout(() => {
      ended = performance.now();
      hooks.onEnd?.();
      phase = 'done';
    }, seconds * 1000);
  }, 1000);
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        while (phase !== 'done') {
          try {
            await op(i);
            if (phase === 'measure') operations++;
          } catch (err) {
            errors++;
            firstError ??= err;
            if (errors > 100) throw new Error(`the ceiling's operation keeps failing: ${String(firstError)}`);
          }
        }
      }),
    );
  } finally {
    clearTimeout(warmupTimer);
    clearTimeout(endTimer);
  }
  return { operations, errors, seconds: (ended - started) / 1000 };
}

/**
 * PostgreSQL transactions/s of one command's shape through `pg` with a pool of `poolSize`, driven
 * by `clients` concurrent callers, each on orders of its own: BEGIN; SELECT … FOR UPDATE; UPDATE
 * with a version check; INSERT a journal row; COMMIT. On scratch tables, dropped afterwards.
 */
export async function postgresCeiling(databaseUrl: string, opts: { seconds: number; clients?: number; poolSize?: number }): Promise<Ceiling> {
  const clients = opts.clients ?? 64;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: opts.poolSize ?? 8 });
  const ORDERS_PER_CLIENT = 4;
  try {
    await pool.query(`
      DROP TABLE IF EXISTS ceiling_journal, ceiling_orders;
      CREATE TABLE ceiling_orders (id text PRIMARY KEY, version int NOT NULL, snapshot jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE ceiling_journal (order_id text NOT NULL, seq int NOT NULL, type text NOT NULL, data jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (order_id, seq));`);
    await pool.query(`INSERT INTO ceiling_orders (id, version, snapshot) SELECT 'order-' || g, 0, $1::jsonb FROM generate_series(0, $2::int - 1) g`, [SNAPSHOT, clients * ORDERS_PER_CLIENT]);
    const turns: number[] = [];
    const transaction = async (i: number) => {
      const turn = (turns[i] ?? 0) + 1;
      turns[i] = turn;
      const id = `order-${i * ORDERS_PER_CLIENT + (turn % ORDERS_PER_CLIENT)}`;
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query<{ version: number }>('SELECT version, snapshot FROM ceiling_orders WHERE id = $1 FOR UPDATE', [id]);
        const version = rows[0]!.version;
        const updated = await client.query('UPDATE ceiling_orders SET version = $2, snapshot = $3, updated_at = now() WHERE id = $1 AND version = $4', [id, version + 1, SNAPSHOT, version]);
        if (updated.rowCount !== 1) throw new Error(`version check failed on ${id}`);
        await client.query('INSERT INTO ceiling_journal (order_id, seq, type, data) VALUES ($1, $2, $3, $4)', [id, version + 1, 'accepted', EVENT]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    };
    let cpuStart = 0;
    let cpuEnd = 0;
    const r = await closedLoop(clients, opts.seconds, transaction, {
      onMeasure: () => (cpuStart = postgresCpuSeconds()),
      onEnd: () => (cpuEnd = postgresCpuSeconds()),
    });
    return { perS: r.operations / r.seconds, operations: r.operations, seconds: r.seconds, errors: r.errors, serverCpuMsPerOp: ((cpuEnd - cpuStart) * 1000) / r.operations };
  } finally {
    await pool.query('DROP TABLE IF EXISTS ceiling_journal, ceiling_orders').catch(() => undefined);
    await pool.end();
  }
}

/**
 * BullMQ jobs/s: small jobs added one by one by `producers` concurrent callers and processed by one
 * Worker with concurrency `workerConcurrency`, under a prefix of its own (removed afterwards).
 * Producers hold back while more than `maxBacklog` jobs wait, so the figure is the processing rate.
 */
export async function bullmqCeiling(redisUrl: string, opts: { seconds: number; prefix: string; producers?: number; workerConcurrency?: number; maxBacklog?: number }): Promise<Ceiling> {
  const maxBacklog = opts.maxBacklog ?? 1000;
  const producerConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('ceiling', { connection: producerConnection, prefix: opts.prefix });
  let processed = 0;
  let measuring = false;
  let measured = 0;
  let added = 0;
  // Producers that found the backlog full wait on one shared gate, opened when it has halved.
  let gate: { opened: Promise<void>; open: () => void } | undefined;
  const openGate = () => {
    gate?.open();
    gate = undefined;
  };
  const backlogHalved = () => {
    if (!gate) {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      gate = { opened, open };
    }
    return gate.opened;
  };
  const worker = new Worker('ceiling', async () => undefined, { connection: workerConnection, prefix: opts.prefix, concurrency: opts.workerConcurrency ?? 8 });
  worker.on('completed', () => {
    processed++;
    if (measuring) measured++;
    if (added - processed < maxBacklog / 2) openGate();
  });
  let failed = 0;
  worker.on('failed', () => failed++);
  let done = false;
  let started = 0;
  let ended = 0;
  let cpuStart = 0;
  let cpuEnd = 0;
  try {
    await worker.waitUntilReady();
    setTimeout(() => {
      measuring = true;
      started = performance.now();
      cpuStart = redisCpuSeconds();
      setTimeout(() => {
        measuring = false;
        ended = performance.now();
        cpuEnd = redisCpuSeconds();
        done = true;
        openGate();
      }, opts.seconds * 1000);
    }, 1000);
    let seq = 0;
    await Promise.all(
      Array.from({ length: opts.producers ?? 8 }, async () => {
        while (!done) {
          if (added - processed >= maxBacklog) {
            await backlogHalved();
            continue;
          }
          added++;
          seq++;
          await queue.add('event', { orderId: `order-${seq % 500}`, seq, type: 'accepted' }, { removeOnComplete: true, removeOnFail: true });
        }
      }),
    );
    const seconds = (ended - started) / 1000;
    return { perS: measured / seconds, operations: measured, seconds, errors: failed, serverCpuMsPerOp: ((cpuEnd - cpuStart) * 1000) / measured };
  } finally {
    await worker.close(true).catch(() => undefined);
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close().catch(() => undefined);
    producerConnection.disconnect();
    workerConnection.disconnect();
  }
}
