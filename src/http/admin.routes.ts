import type { AnyConsumer, EventRef } from '../actors/consumers/types.ts';
import type { EventBus } from '../actors/event-bus.ts';
import type { Principal } from '../actors/principal.ts';
import type { WorkKind, WorkPrompt } from '../actors/work.ts';
import type { Database } from '../db/pg.ts';
import { ForbiddenError } from '../errors.ts';
import { defineRoute, type Route } from './route.ts';
import { ReplaySchema } from './schemas.ts';
import { FailedEventsSchema, ReplayResultSchema } from './answer-schemas.ts';

function requireAdmin(who: Principal): void {
  if (who.role !== 'admin') throw new ForbiddenError('only an admin may see or replay failed events', { role: who.role });
}

interface FailureRow {
  consumer: string;
  order_id: string;
  seq: number;
  attempts: number;
  last_error: string;
  first_failed_at: Date;
  last_failed_at: Date;
}

export function adminRoutes(deps: { pg: Database; bus: EventBus; kinds: readonly WorkKind[]; consumers: readonly AnyConsumer[]; prompt: WorkPrompt }): Route[] {
  const failures = async (filter: { consumer?: string; orderId?: string }) =>
    deps.pg.query<FailureRow>(
      `SELECT consumer, order_id, seq, attempts, last_error, first_failed_at, last_failed_at FROM consumer_failures
       WHERE attempts > 0 AND ($1::text IS NULL OR consumer = $1) AND ($2::uuid IS NULL OR order_id = $2)
       ORDER BY first_failed_at LIMIT 500`,
      [filter.consumer ?? null, filter.orderId ?? null],
    );

  return [
    defineRoute({
      method: 'get',
      path: '/admin/failed-events',
      summary:
        'What keeps failing: orders whose events a consumer could not apply (it still owes them and retries with backoff), and durable work (refunds, notifications, timers, payment reconciliations) still owed after 3 or more attempts. Admins only.',
      tag: 'admin',
      auth: true,
      responses: { 200: { description: 'failing events and work', schema: FailedEventsSchema } },
      errors: [401, 403],
      async handle(ctx, { principal }) {
        requireAdmin(principal);
        const work = [];
        for (const kind of deps.kinds) {
          for (const row of await kind.table.failing(3, 200)) {
            work.push({ kind: kind.name, key: row.key, attempts: row.attempts, lastError: row.last_error, dueAt: row.due_at!.toISOString() });
          }
        }
        ctx.body = {
          consumers: (await failures({})).map((f) => ({
            consumer: f.consumer,
            orderId: f.order_id,
            seq: f.seq,
            attempts: f.attempts,
            error: f.last_error,
            firstFailedAt: f.first_failed_at.toISOString(),
            lastFailedAt: f.last_failed_at.toISOString(),
          })),
          work,
        };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/admin/failed-events/replay',
      summary:
        'Replays now, without waiting for the next backoff: the owed events of failing consumers (optionally one consumer or one order) and every failing work item. Admins only.',
      tag: 'admin',
      auth: true,
      body: ReplaySchema,
      responses: { 200: { description: 'what was sent again', schema: ReplayResultSchema } },
      errors: [400, 401, 403, 413, 415],
      async handle(ctx, { body, principal }) {
        requireAdmin(principal);
        const rows = await failures(body);
        await deps.bus.replayOwed(body);
        const byConsumer = new Map<string, number>();
        for (const f of rows) byConsumer.set(f.consumer, (byConsumer.get(f.consumer) ?? 0) + 1);
        const work: Record<string, number> = {};
        if (!body.consumer && !body.orderId) {
          for (const kind of deps.kinds) {
            const keys = (await kind.table.failing(3, 1000)).map((r) => r.key);
            const due = await kind.table.dueNow(keys);
            deps.prompt.schedule(kind.name, due);
            work[kind.name] = due.length;
          }
        }
        ctx.body = { events: Object.fromEntries(byConsumer), work };
      },
    }),
  ];
}
