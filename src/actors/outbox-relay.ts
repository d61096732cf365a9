import type { Queue } from 'bullmq';
import type { DataSource } from 'typeorm';
import { sql } from '../db/data-source.ts';
import type { Logger } from '../log.ts';
import type { OrderEventMessage } from './messages.ts';

export interface OutboxRelayOptions {
  db: DataSource;
  queue: Queue<OrderEventMessage>;
  log: Logger;
  pollMs: number;
  batchSize?: number;
}

/**
 * Moves committed outbox rows to BullMQ. The job id is the event id, so a crash between the
 * enqueue and marking the row published re-adds a job BullMQ already has, and consumers dedupe
 * by event id anyway. `FOR UPDATE SKIP LOCKED` lets every replica run a relay side by side.
 */
export class OutboxRelay {
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private poked = false;
  private readonly batchSize: number;

  constructor(private readonly opts: OutboxRelayOptions) {
    this.batchSize = opts.batchSize ?? 200;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Asks the relay to look at the outbox now rather than at its next poll. */
  poke(): void {
    this.poked = true;
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  /** Publishes one batch; returns how many rows it moved. */
  async publishBatch(): Promise<number> {
    return this.opts.db.transaction(async (tx) => {
      const rows = await sql<{ event_id: string; type: string; payload: OrderEventMessage }>(
        tx,
        `SELECT event_id, type, payload FROM outbox WHERE published_at IS NULL
         ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [this.batchSize],
      );
      if (rows.length === 0) return 0;
      await this.opts.queue.addBulk(rows.map((r) => ({ name: r.type, data: r.payload, opts: { jobId: r.event_id } })));
      await sql(tx, 'UPDATE outbox SET published_at = now() WHERE event_id = ANY($1::uuid[])', [rows.map((r) => r.event_id)]);
      return rows.length;
    });
  }

  private async run(): Promise<void> {
    while (this.running) {
      let moved = 0;
      this.poked = false;
      try {
        moved = await this.publishBatch();
      } catch (err) {
        this.opts.log.error({ err }, 'outbox relay failed; will retry');
      }
      if (moved === this.batchSize || this.poked || !this.running) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.opts.pollMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }
}
