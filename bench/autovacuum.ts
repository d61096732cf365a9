// Standing in for PostgreSQL's autovacuum on a server that has it off, for the benchmark and the
// scaling demo alike.
import { maintenanceInWindow, type Maintenance } from './report.ts';

export interface AutovacuumStandInOptions {
  /** Runs one statement on the measured database and answers its rows. */
  query: <T>(sql: string) => Promise<T[]>;
  /** Says a failed pass or ANALYZE (the caller's output). */
  say: (line: string) => void;
  /** Seconds between the checks of autovacuum's vacuum rule while it stands in (autovacuum's default naptime). */
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
 * on one database, by autovacuum's own rules and the server's own thresholds for them:
 * - a VACUUM (ANALYZE) of every table when asked (`now`, before each run or step), so that each
 *   starts from the same clean state;
 * - every `vacuumEveryS` seconds (autovacuum's naptime), a VACUUM of each table that meets
 *   autovacuum's vacuum rule: more dead rows than `autovacuum_vacuum_threshold` +
 *   `autovacuum_vacuum_scale_factor` of its rows (50 + 20 %), or more rows inserted since its last
 *   vacuum than `autovacuum_vacuum_insert_threshold` + `autovacuum_vacuum_insert_scale_factor`
 *   (1000 + 20 %). Until 2026-12-06 this pass vacuumed and analyzed every table each time, which
 *   autovacuum never does on tables that have grown: on a database of a few runs it took 1–3 s of
 *   a 20 s measured window, whichever replica count that window measured;
 * - every `analyzeCheckS` seconds, an ANALYZE of each table that meets autovacuum's analyze rule
 *   (more rows changed since its last analysis than `autovacuum_analyze_threshold` +
 *   `autovacuum_analyze_scale_factor` of its rows: 50 + 10 %). Without that rule, the first run on
 *   a fresh database was measured on the statistics of empty tables for its whole length (its
 *   PostgreSQL CPU per command was twice the next run's); a server that has run for a while, as a
 *   user's has, keeps its statistics fresh that way.
 *
 * Inside a measured window (`measuring`) the analyze rule is checked no more often than autovacuum
 * itself checks a database (`autovacuum_naptime`, 60 s by default), since the last check: a fresh
 * database's tables grow by half within a 20 s window, so checking every 2 s there analyzed each
 * table four or five times a window, a cost autovacuum would not pay and a server whose tables have
 * grown large would not see (it cost 40 % of PostgreSQL's statement time in the window at one
 * replica, docs/benchmarks.md, 2026-12-04 19:30). Per-table storage parameters (`autovacuum_*`
 * reloptions) are not read: no table of this project sets one.
 */
/** The thresholds of autovacuum's rules (`pg_settings`). */
export interface AutovacuumRules {
  vacuumThreshold: number;
  vacuumScale: number;
  /** -1 turns the insert rule off. */
  insertThreshold: number;
  insertScale: number;
  analyzeThreshold: number;
  analyzeScale: number;
}

/** PostgreSQL's defaults (15). */
const DEFAULT_RULES: AutovacuumRules = {
  vacuumThreshold: 50,
  vacuumScale: 0.2,
  insertThreshold: 1000,
  insertScale: 0.2,
  analyzeThreshold: 50,
  analyzeScale: 0.1,
};

const RULE_SETTINGS: Record<keyof AutovacuumRules, string> = {
  vacuumThreshold: 'autovacuum_vacuum_threshold',
  vacuumScale: 'autovacuum_vacuum_scale_factor',
  insertThreshold: 'autovacuum_vacuum_insert_threshold',
  insertScale: 'autovacuum_vacuum_insert_scale_factor',
  analyzeThreshold: 'autovacuum_analyze_threshold',
  analyzeScale: 'autovacuum_analyze_scale_factor',
};

/** autovacuum's rule for one counter of `pg_stat_user_tables s` (joined to `pg_class c`): over the threshold plus the scale factor of the table's rows. */
const past = (counter: string, threshold: number, scale: number) => `${counter} > ${threshold} + ${scale} * greatest(c.reltuples, 0)`;

export class AutovacuumStandIn {
  /** Standing in (the server's autovacuum is off), and not stopped. */
  enabled = false;
  /** Full passes (`now`). */
  passes = 0;
  /** Tables vacuumed by autovacuum's vacuum rule. */
  vacuums = 0;
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
  /** The server's thresholds for autovacuum's rules (PostgreSQL's defaults until `start` reads them). */
  rules: AutovacuumRules = { ...DEFAULT_RULES };
  readonly vacuumEveryS: number;
  readonly analyzeCheckS: number;
  /** The vacuum under way (a full pass or one by the rule). */
  private running: Promise<void> | undefined;
  /** The full pass asked for and not yet ended. */
  private full: Promise<void> | undefined;
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
    const settings = await this.opts.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name = ANY('{${Object.values(RULE_SETTINGS).join(',')}}')`,
    );
    for (const [key, name] of Object.entries(RULE_SETTINGS) as [keyof AutovacuumRules, string][]) {
      const value = Number(settings.find((s) => s.name === name)?.setting);
      if (Number.isFinite(value)) this.rules[key] = value;
    }
    this.enabled = true;
    this.naptimeS = row?.naptime ?? 60;
    this.timer = setInterval(() => void this.vacuumDue(), this.vacuumEveryS * 1000);
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
      const { analyzeThreshold, analyzeScale } = this.rules;
      this.analyses += await this.tablesPast('ANALYZE', past('s.n_mod_since_analyze', analyzeThreshold, analyzeScale));
    } catch (err) {
      if (this.enabled) this.opts.say(`  (ANALYZE failed: ${String(err)})`);
    }
  }

  /**
   * VACUUM of the tables autovacuum would vacuum now (none while a pass or another check runs):
   * those with more dead rows, or more rows inserted since their last vacuum, than the rule allows.
   */
  vacuumDue(): Promise<void> {
    if (!this.enabled || this.running) return this.running ?? Promise.resolve();
    const { vacuumThreshold, vacuumScale, insertThreshold, insertScale } = this.rules;
    const dead = past('s.n_dead_tup', vacuumThreshold, vacuumScale);
    const inserted = insertThreshold < 0 ? 'false' : past('s.n_ins_since_vacuum', insertThreshold, insertScale);
    return this.exclusive(async () => {
      this.vacuums += await this.tablesPast('VACUUM', `${dead} OR ${inserted}`);
    });
  }

  /** Runs `command` on the tables for which `rule` holds (none: nothing), logs it, and answers how many. */
  private async tablesPast(command: 'VACUUM' | 'ANALYZE', rule: string): Promise<number> {
    const tables = await this.opts.query<{ name: string }>(
      `SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) AS name
       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
       WHERE ${rule}
       ORDER BY s.relname`,
    );
    if (tables.length === 0) return 0;
    const names = tables.map((t) => t.name).join(', ');
    const start = performance.now();
    await this.opts.query(`${command} ${names}`);
    this.record({ what: `${command} of ${names.replaceAll('public.', '')}`, start, end: performance.now() });
    return tables.length;
  }

  /**
   * What it does in the server's stead, for the caller's output: `setting` is what `start` answered,
   * `before` says when a pass runs besides every `vacuumEveryS` seconds ("before each step").
   */
  describe(setting: string, before: string): string {
    return (
      `PostgreSQL runs with autovacuum=${setting}: VACUUM (ANALYZE) runs ${before}, VACUUM on a table by autovacuum's rule every ${this.vacuumEveryS} s, ` +
      `and ANALYZE on a table by autovacuum's rule (checked every ${this.analyzeCheckS} s, and inside a measured window every ${this.naptimeS} s, autovacuum's naptime), in its stead`
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

  /** A full pass now (or the one already asked for), once the vacuum under way, if any, has ended. */
  now(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.full) return this.full;
    const full = this.exclusive(async () => {
      const start = performance.now();
      await this.opts.query('VACUUM (ANALYZE)');
      this.passes += 1;
      this.record({ what: 'VACUUM (ANALYZE)', start, end: performance.now() });
    }, this.running).finally(() => {
      this.full = undefined;
    });
    this.full = full;
    return full;
  }

  /** Runs `work` as the one vacuum under way (after `after`), saying a failure in the caller's output. */
  private exclusive(work: () => Promise<void>, after?: Promise<void>): Promise<void> {
    const running: Promise<void> = (after ?? Promise.resolve())
      .then(() => (this.enabled ? work() : undefined))
      .catch((err: unknown) => {
        if (this.enabled) this.opts.say(`  (VACUUM failed: ${String(err)})`);
      })
      .finally(() => {
        if (this.running === running) this.running = undefined;
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
