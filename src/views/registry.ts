import type { AnyConsumer, Consumer } from '../actors/consumers/types.ts';
import type { Database } from '../db/pg.ts';
import { customerOrdersView } from './customer-orders.view.ts';
import { deliveriesView } from './deliveries.view.ts';
import { riderDeliveryCountsView } from './rider-delivery-counts.view.ts';
import { storeFoodCountsView } from './store-food-counts.view.ts';
import { storeOrdersView } from './store-orders.view.ts';
import { noteApplied } from './status.ts';
import { consumerNameOf, type ViewDefinition } from './view.ts';
import { withFields } from '../objects.ts';

/** Every read model the service keeps; the runtime runs a consumer for each. */
export const VIEWS: readonly ViewDefinition[] = [customerOrdersView, storeOrdersView, storeFoodCountsView, riderDeliveryCountsView, deliveriesView];

/** The view of that name (`customer-orders` or its consumer's name, `view.customer-orders`). */
export function findView(name: string): ViewDefinition | undefined {
  return VIEWS.find((v) => v.name === name || consumerNameOf(v.name) === name);
}

/** The views among the runtime's consumers, in registry order. */
export function viewsAmong(consumers: readonly { name: string }[]): ViewDefinition[] {
  const names = new Set(consumers.map((c) => c.name));
  return VIEWS.filter((v) => names.has(consumerNameOf(v.name)));
}

/**
 * Notes in `view_status` when each view last applied events. Outside the view's transaction and
 * at most once a second per process, for every view that applied events since, in one statement:
 * it costs the write path nothing measurable and no two batches ever wait for each other on it
 * (it writes its rows in name order, as a rebuild's progress does, so neither can deadlock the other);
 * the time it shows is right to within a second.
 */
export class AppliedRecorder {
  private readonly noted = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    private readonly everyMs = 1000,
  ) {}

  track<S>(view: string, consumer: Consumer<S>): Consumer<S> {
    return {
      name: consumer.name,
      plan: (batch) => {
        const planned = consumer.plan(batch);
        const after = planned.afterCommit;
        return withFields(planned, {
          afterCommit: (returned: Record<string, unknown>[][]) => {
            after?.(returned);
            this.note(view);
          },
        });
      },
    };
  }

  private note(view: string): void {
    this.noted.add(view);
    if (this.timer) return;
    this.timer = setTimeout(() => this.flush(), this.everyMs);
    this.timer.unref();
  }

  private flush(): void {
    this.timer = undefined;
    const views = [...this.noted];
    this.noted.clear();
    // Best effort: the next batch notes them again (a closing pool, a database that went away).
    noteApplied(this.db, views).catch(() => undefined);
  }
}

/** The consumers of the given views (all by default), each noting when it applied events last. */
export function viewConsumers(db: Database, views: readonly ViewDefinition[] = VIEWS): AnyConsumer[] {
  const recorder = new AppliedRecorder(db);
  return views.map((v) => recorder.track(v.name, v.consumer()));
}
