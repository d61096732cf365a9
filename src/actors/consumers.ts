import type { DataSource, EntityManager } from 'typeorm';
import { sql } from '../db/data-source.ts';
import type { OrderEventMessage } from './messages.ts';

/**
 * Something that reacts to order events: a saga step, a view, a notifier. BullMQ delivers at least
 * once; `applyOnce` makes each consumer's effect happen once per event id.
 */
export interface Consumer {
  name: string;
  handles(message: OrderEventMessage): boolean;
  /** Runs inside the transaction that records the event id in the inbox. */
  apply(tx: EntityManager, message: OrderEventMessage): Promise<void>;
}

/** Applies the message unless this consumer already has; returns whether it applied it now. */
export async function applyOnce(db: DataSource, consumer: Consumer, message: OrderEventMessage): Promise<boolean> {
  return db.transaction(async (tx) => {
    const fresh = await sql(
      tx,
      'INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING event_id',
      [consumer.name, message.eventId],
    );
    if (fresh.length === 0) return false;
    await consumer.apply(tx, message);
    return true;
  });
}

/** Delivers one message to every consumer that handles it; a failure leaves the job to be retried. */
export async function dispatch(db: DataSource, consumers: readonly Consumer[], message: OrderEventMessage): Promise<string[]> {
  const applied: string[] = [];
  for (const consumer of consumers) {
    if (consumer.handles(message) && (await applyOnce(db, consumer, message))) applied.push(consumer.name);
  }
  return applied;
}
