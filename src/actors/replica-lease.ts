import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Database } from '../db/pg.ts';
import type { Logger } from '../log.ts';

export interface ReplicaLeaseOptions {
  db: Database;
  /** How long the lease lasts without renewal: a replica that dies is known gone after this. */
  leaseMs: number;
  log: Logger;
  /** Runs after each renewal (e.g. taking over what replicas whose lease lapsed left in flight). */
  onRenewed?: () => Promise<void>;
}

/**
 * This replica's lease in PostgreSQL (`replica_leases`), renewed three times per `leaseMs`. What a
 * replica does with an outside party and cannot finish after a crash (a payment attempt) names
 * the replica, so the others know as soon as the lease lapses that nobody will finish it.
 */
export class ReplicaLease {
  readonly id = `${hostname().slice(0, 40)}-${process.pid}-${randomBytes(4).toString('hex')}`;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  constructor(private readonly opts: ReplicaLeaseOptions) {}

  /** Takes the lease (before the replica does anything that names it), then keeps it. */
  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => {
      this.renewing ??= this.renew()
        .catch((err: Error) => this.opts.log.warn({ err: err.message }, 'could not renew the replica lease'))
        .finally(() => (this.renewing = undefined));
    }, Math.max(100, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  async renew(): Promise<void> {
    await this.opts.db.query(
      `WITH gone AS (DELETE FROM replica_leases WHERE until < now() - interval '1 hour')
       INSERT INTO replica_leases (replica, until) VALUES ($1, now() + make_interval(secs => $2::float8 / 1000))
       ON CONFLICT (replica) DO UPDATE SET until = EXCLUDED.until`,
      [this.id, this.opts.leaseMs],
    );
    await this.opts.onRenewed?.();
  }

  /** Gives the lease up: the replica is gone from now on. Idempotent. */
  async end(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    await this.opts.db.query('DELETE FROM replica_leases WHERE replica = $1', [this.id]);
  }
}
