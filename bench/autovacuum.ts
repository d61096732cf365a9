// Standing in for PostgreSQL's autovacuum on a server that has it off, for the benchmark and the
// scaling demo alike.
import { maintenanceInWindow, type Maintenance } from './report.ts';

export interface AutovacuumStandInOptions {
  /** Runs one statement on the measured database and answers its rows. */
  query: <T>(sql: string) => Promise<T[]>;
  /** Says a failed pass or ANALYZE (the caller's output). */
  say: (line: string) => void;
  /** Seconds between VACUUM (ANALYZE) passes while it stands in (autovacuum's default naptime). */
  vacuumEveryS?: number;
  /** Seconds between the checks of autovacuum's analyze rule outside a measured window. */
  analyzeCheckS?: number;
  /** The latest passes and analyses `log` keeps (1000 by default). */
  logKept?: number;
}

/**
 * Without autovacuum, tables fill with dead rows and their statistics never change, so the
 * service's cached plans stay those of the first, nearly empty tables, and every run measures the
 * host's configuration rather than the service. Where the server has it off, this stands in for it
 * on one database: VACUUM (ANALYZE) when asked (`now`, before each run or step) and every
 * `vacuumEveryS` seconds while it runs, and ANALYZE of each table that meets autovacuum's own
 * analyze rule (more than 50 + 10 % of its rows changed since its last analysis) every
 * `analyzeCheckS` seconds. Without that rule, the first run on a fresh database was measured on
 * the statistics of empty tables for its whole length (its PostgreSQL CPU per command was twice the
 * next run's); a server that has run for a while, as a user's has, keeps its statistics fresh
 * that way.
 *
 * Inside a measured window (`measuring`) the rule is checked no more often than autovacuum itself
 * checks a database (`autovacuum_naptime`, 60 s by default), since the last check: a fresh
 * database's tables grow by half within a 20 s window, so checking every 2 s there analyzed each
 * table four or five times a window, a cost autovacuum would not pay and a server whose tables have
 * grown large would not see (it cost 40 % of PostgreSQL's statement time in the window at one
 * replica, docs/benchmarks.md, 2026-12-04 19:30).
 */
export class AutovacuumStandIn {
  /** Standing in (the server's autovacuum is off), and not stopped. */
  enabled = false;
  passes = 0;
  analyses = 0;
  /** While a measured window is open: the rule is checked at autovacuum's own pace. */
  measuring = false;
  /**
   * The latest passes and analyses (at most `logKept`: a measured window is minutes long, a soak
   * may run for hours), each with its start and end
   * (performance.now()), to say which fell inside a measured window (`inWindow`).
   */
  readonly log: Maintenance[] = [];
  /** autovacuum_naptime of the server, in seconds. */
  naptimeS = 60;
  readonly vacuumEveryS: number;
  readonly analyzeCheckS: number;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private analyzer: NodeJS.Timeout | undefined;
  private lastCheck = 0;

  constructor(private readonly opts: AutovacuumStandInOptions) {
    this.vacuumEveryS = opts.vacuumEveryS ?? 60;
    this.analyzeCheckS = opts.analyzeCheckS ?? 2;
  }

  /** Starts standing in if the server's autovacuum is off; answers its setting then, undefined if it is on. */
  async start(): Promise<string | undefined> {
    const [row] = await this.opts.query<{ autovacuum: string; naptime: number }>(
      `SELECT current_setting('autovacuum') AS autovacuum, (SELECT setting::int FROM pg_settings WHERE name = 'autovacuum_naptime') AS naptime`,
    );
    const setting = row?.autovacuum;
    if (setting === 'on') return undefined;
    this.enabled = true;
    this.naptimeS = row?.naptime ?? 60;
    this.timer = setInterval(() => void this.now(), this.vacuumEveryS * 1000);
    this.timer.unref();
    this.analyzer = setInterval(() => void this.analyzeStale(), this.analyzeCheckS * 1000);
    this.analyzer.unref();
    return setting ?? 'unknown';
  }

  /** ANALYZE of the tables autovacuum would analyze now (skipped while a VACUUM pass runs). */
  async analyzeStale(): Promise<void> {
    if (!this.enabled || this.running) return;
    if (this.measuring && performance.now() - this.lastCheck < this.naptimeS * 1000) return;
    this.lastCheck = performance.now();
    try {
      const stale = await this.opts.query<{ name: string }>(
        `SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) AS name
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)`,
      );
      if (stale.length === 0) return;
      const names = stale.map((t) => t.name);
      const start = performance.now();
      await this.opts.query(`ANALYZE ${names.join(', ')}`);
      this.record({ what: `ANALYZE of ${names.join(', ').replaceAll('public.', '')}`, start, end: performance.now() });
      this.analyses += stale.length;
    } catch (err) {
      if (this.enabled) this.opts.say(`  (ANALYZE failed: ${String(err)})`);
    }
  }

  /**
   * What it does in the server's stead, for the caller's output: `setting` is what `start` answered,
   * `before` says when a pass runs besides every `vacuumEveryS` seconds ("before each step").
   */
  describe(setting: string, before: string): string {
    return (
      `PostgreSQL runs with autovacuum=${setting}: VACUUM (ANALYZE) runs ${before} and every ${this.vacuumEveryS} s, and ANALYZE on a table by autovacuum's rule ` +
      `(checked every ${this.analyzeCheckS} s, and inside a measured window every ${this.naptimeS} s, autovacuum's naptime), in its stead`
    );
  }

  /** The passes and analyses that overlapped the window [from, to] (performance.now()), each with its seconds inside it; empty when none did. */
  inWindow(from: number, to: number): string {
    return maintenanceInWindow(this.log, from, to);
  }

  private record(entry: Maintenance): void {
    this.log.push(entry);
    const kept = this.opts.logKept ?? 1000;
    if (this.log.length > kept) this.log.splice(0, this.log.length - kept);
  }

  /** One pass now (or the one already running). */
  now(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const start = performance.now();
    const running =
      this.running ??
      this.opts
        .query('VACUUM (ANALYZE)')
        .then(() => {
          this.passes += 1;
          this.record({ what: 'VACUUM (ANALYZE)', start, end: performance.now() });
        })
        .catch((err: unknown) => {
          if (this.enabled) this.opts.say(`  (VACUUM failed: ${String(err)})`);
        })
        .finally(() => {
          this.running = undefined;
        });
    this.running = running;
    return running;
  }

  /** No more passes or analyses; one under way when the database is dropped fails quietly. */
  stop(): void {
    this.enabled = false;
    clearInterval(this.timer);
    clearInterval(this.analyzer);
  }
}
