import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** A process the benchmark started, with its output kept in a file and its last lines in memory. */
export interface Managed {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  /** The last lines it wrote (stdout and stderr). */
  tail(lines?: number): string;
  /** SIGTERM, then SIGKILL after `graceMs`; an exit after stop() is not a crash. */
  stop(graceMs?: number): Promise<void>;
  /** Sends a signal on purpose (a chaos kill, a shutdown under test): the exit that follows is not a crash. */
  signal(signal: NodeJS.Signals): void;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** True for a process that is meant to finish on its own (the load generator). */
  finishes?: boolean;
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
}

const TAIL_LINES = 200;

/**
 * Every process the benchmark starts, so that all of them are stopped on every way out: the end,
 * a failure, Ctrl-C. Each runs in its own process group (so a Ctrl-C reaches the benchmark, which
 * stops them in order, rather than all of them at once), and a process that dies while it should
 * be running is reported through `onCrash` with the tail of its log.
 */
export class ProcessGroup {
  private readonly all = new Set<Managed & { stopping: boolean }>();

  constructor(
    private readonly logDir: string,
    private readonly onCrash: (m: Managed, how: string) => void,
  ) {}

  start(name: string, command: string, args: readonly string[], opts: StartOptions = {}): Managed {
    const logFile = join(this.logDir, `${name}.log`);
    const log: WriteStream = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(command, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command} ${args.join(' ')})`);
    const lines: string[] = [];
    const keep = (line: string) => {
      lines.push(line);
      if (lines.length > TAIL_LINES) lines.shift();
      log.write(`${line}\n`);
    };
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      opts.onStdoutLine?.(line);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      keep(line);
      opts.onStderrLine?.(line);
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('error', (err) => {
        keep(`[bench] ${err.message}`);
        resolve({ code: -1, signal: null });
      });
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    const m: Managed & { stopping: boolean } = {
      name,
      pid: child.pid,
      logFile,
      child,
      exited,
      stopping: false,
      running: () => child.exitCode === null && child.signalCode === null,
      tail: (n = 40) => lines.slice(-n).join('\n'),
      signal: (sig) => {
        m.stopping = true;
        signalGroup(child.pid!, sig);
      },
      stop: async (graceMs = 10_000) => {
        m.stopping = true;
        if (m.running()) {
          signalGroup(child.pid!, 'SIGTERM');
          const timer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        signalGroup(child.pid!, 'SIGKILL'); // whatever it left behind in its group
        this.all.delete(m);
      },
    };
    this.all.add(m);
    void exited.then(({ code, signal }) => {
      log.end();
      if (!m.stopping && !(opts.finishes && code !== null)) this.onCrash(m, signal ? `was killed by ${signal}` : `exited with code ${code}`);
    });
    return m;
  }

  /** Stops every process, the most recently started first. */
  async stopAll(graceMs = 10_000): Promise<void> {
    for (const m of [...this.all].reverse()) await m.stop(graceMs);
  }

  /** For `process.on('exit')`: no waiting possible, so SIGKILL whatever still runs. */
  killAllNow(): void {
    for (const m of this.all) {
      m.stopping = true;
      signalGroup(m.pid, 'SIGKILL');
    }
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Polls `check` until it answers true, failing at the deadline, or at once if `process` died meanwhile.
 */
export async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs: number, process?: Managed): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (process && !process.running()) throw new Error(`${process.name} exited while waiting for ${what}:\n${process.tail()}`);
    try {
      if (await check()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** GET that answers the status, or throws on a network error; bounded by a short deadline. */
export async function httpStatus(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.status;
}

/** Whether something accepts TCP connections on the port (for servers that speak only HTTP/2). */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * One of the benchmark's own HTTP helpers (the webhook receiver, the OTLP sink): `script` run by
 * tsx on a free port, answered once its `/_bench/stats` does. Returns its base URL and process.
 */
export async function startStatsServer(group: ProcessGroup, name: string, script: string): Promise<{ base: string; child: Managed }> {
  const port = await freePort();
  const child = group.start(name, process.execPath, ['--import', 'tsx', script], { env: { ...process.env, PORT: String(port) } });
  const base = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await httpStatus(`${base}/_bench/stats`)) === 200, `the ${name}`, 30_000, child);
  return { base, child };
}
