import type pg from 'pg';
import type { DataSource } from 'typeorm';

/** Anything that runs SQL: the pool (each statement on its own) or a transaction's client. */
export interface Sql {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
}

/**
 * Thin access to the `pg` pool under TypeORM's DataSource. The hot paths use it directly: one
 * statement needs no transaction, and a transaction is BEGIN … COMMIT on one client, nothing more.
 */
/**
 * Names for the statements the service sends: each distinct text is prepared once per connection,
 * so PostgreSQL parses and plans it once instead of on every call (the hot paths are a handful of
 * fixed statements). Bounded, so SQL built on the fly cannot grow it without end.
 */
const names = new Map<string, string>();
const MAX_PREPARED = 500;

function statement(text: string, values: readonly unknown[]): pg.QueryConfig {
  let name = names.get(text);
  if (name === undefined && names.size < MAX_PREPARED) {
    name = `baedal_${names.size + 1}`;
    names.set(text, name);
  }
  return { name, text, values: values as unknown[] };
}

const endedByServer = () => undefined;
/** Makes a connection's 'error' event harmless (see the Database constructor). */
function guardConnection(client: pg.Client): void {
  if (!client.listeners('error').includes(endedByServer)) client.on('error', endedByServer);
}

export class Database implements Sql {
  /** Sees every statement sent through this database (tests use it to check the plans the service gets). */
  onStatement?: (text: string, params: readonly unknown[]) => void;

  constructor(readonly pool: pg.Pool) {
    // PostgreSQL may end a connection at any time (a restart, an operator terminating backends).
    // The pool listens for that on idle connections only; a connection that is checked out, or
    // held between statements, would emit an unhandled 'error' and take the process down. The
    // error is not lost: the statement in flight fails with it, and the client is released broken.
    if (!pool.listeners('connect').includes(guardConnection)) pool.on('connect', guardConnection);
    for (const client of (pool as unknown as { _clients?: pg.Client[] })._clients ?? []) guardConnection(client);
  }

  static of(dataSource: DataSource): Database {
    const pool = (dataSource.driver as unknown as { master?: pg.Pool }).master;
    if (!pool) throw new Error('the DataSource is not initialised');
    return new Database(pool);
  }

  async query<Row = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    // Not pool.query(): it closes the connection after any error, and a refused statement (a unique
    // violation, a lost race) would then cost a new connection and its prepared statements.
    this.onStatement?.(text, params);
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      return (await send(client, statement(text, params))).rows as Row[];
    } catch (err) {
      if (isConnectionError(err)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** Runs `fn` in one transaction on one pooled client; rolls back on any error. */
  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await send(client, 'BEGIN');
      const tx: Sql = {
        query: async <Row>(text: string, params: readonly unknown[] = []) => {
          this.onStatement?.(text, params);
          return (await send(client, statement(text, params))).rows as Row[];
        },
      };
      const result = await fn(tx);
      await send(client, 'COMMIT');
      return result;
    } catch (err) {
      await send(client, 'ROLLBACK').catch((rollbackError: Error) => {
        broken = rollbackError; // the connection is unusable: do not return it to the pool
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }
}

/**
 * Sends one statement on `client` and answers with its result. Through pg's callback, given as the
 * query is made, not pg's own promise (`client.query(config)` without one): that sets the query's
 * callback after making it, and with it V8's scavenges kept each answer alive into the old
 * generation, where only a major collection frees it (test/ops/pg-memory.test.ts;
 * docs/benchmarks.md, 2026-12-07 15:44–16:11).
 */
function send(client: pg.PoolClient, config: pg.QueryConfig | string): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    client.query(typeof config === 'string' ? { text: config } : config, (err: Error | undefined, result: pg.QueryResult) => (err ? reject(err) : resolve(result)));
  });
}

/** An error of the connection itself (not of one statement): the client must not be reused. */
function isConnectionError(err: unknown): boolean {
  const code = sqlState(err);
  return code === undefined || !/^[0-9A-Z]{5}$/.test(code) || /^(08|57P|53)/.test(code) || code === '25P03';
}

/** PostgreSQL's SQLSTATE of a failed statement, if it is one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export const UNIQUE_VIOLATION = '23505';
