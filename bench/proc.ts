// CPU time and memory of processes, read from Linux's /proc (the benchmark runs on Linux).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ). */
export const TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface StatTimes {
  /** utime + stime of the process, all its threads. */
  own: number;
  /** cutime + cstime: its children that exited and were waited for (PostgreSQL backends that ended). */
  children: number;
}

function statTimes(pid: number, path = `/proc/${pid}/stat`): StatTimes | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined; // gone
  }
  // The command name may hold spaces and parentheses; the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17.
  const n = (i: number) => Number(fields[i - 3]) / TICKS_PER_S;
  return { own: n(14) + n(15), children: n(16) + n(17) };
}

/** CPU seconds (user + system) the process has used so far, 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  return statTimes(pid)?.own ?? 0;
}

/**
 * CPU seconds the process's main thread has used so far (0 once it is gone). The rest of
 * `cpuSeconds` is its other threads': for Node, V8's compiler and garbage-collector helpers and
 * libuv's pool, which a CPU quota counts as much as the main thread.
 */
export function mainThreadCpuSeconds(pid: number): number {
  return statTimes(pid, `/proc/${pid}/task/${pid}/stat`)?.own ?? 0;
}

/**
 * How many times the process's main thread has gone to sleep so far (`voluntary_ctxt_switches` of
 * /proc/<pid>/status: waits for I/O, a timer or a lock), 0 once it is gone. Each sleep is a wake-up
 * later: counted, not timed, it does not drift with the host's speed, and on a virtual machine a
 * core that halts and is woken costs far more than the switch itself.
 */
export function mainThreadSleeps(pid: number): number {
  try {
    return parseSleeps(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return 0; // gone
  }
}

/** `voluntary_ctxt_switches` of a /proc status file's text (0 when the kernel does not count them). */
export function parseSleeps(status: string): number {
  const match = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status);
  return match ? Number(match[1]) : 0;
}

/** Resident memory in bytes, or undefined once the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function uidOf(pid: number): number | undefined {
  try {
    const match = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function uidOfUser(name: string): number | undefined {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${name}:`));
    return line ? Number(line.split(':')[2]) : undefined;
  } catch {
    return undefined;
  }
}

const POSTGRES_UID = uidOfUser('postgres');

/**
 * CPU seconds used by every PostgreSQL process (those of user postgres): the backends that are
 * alive, plus, through the postmaster's children times, those that have ended. PostgreSQL is
 * shared, so anything else using it on this machine is counted too.
 */
export function postgresCpuSeconds(): number {
  if (POSTGRES_UID === undefined) return NaN;
  let total = 0;
  for (const pid of allPids()) {
    if (uidOf(pid) !== POSTGRES_UID) continue;
    const t = statTimes(pid);
    if (t) total += t.own + t.children;
  }
  return total;
}

/**
 * Sleeps (see `mainThreadSleeps`) of every PostgreSQL process that is alive, by pid: its backends
 * and its background processes. Compare two with `sleepsBetween`: backends start and end all the
 * time, so the totals of two moments cannot simply be subtracted.
 */
export function postgresSleeps(): Map<number, number> | undefined {
  if (POSTGRES_UID === undefined) return undefined; // no user postgres here: not counted
  const byPid = new Map<number, number>();
  for (const pid of allPids()) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      continue; // gone
    }
    // One read of the status file gives both the owner and the count.
    if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) === POSTGRES_UID) byPid.set(pid, parseSleeps(status));
  }
  return byPid;
}

/**
 * Sleeps made between two `postgresSleeps` readings: each process's gain, and the whole count of
 * one that started in between (a pid `a` did not have, or one whose count went down: a new process
 * under a reused pid). A process that ended in between took the sleeps it made since `a` with it,
 * so the figure is a floor, never negative. NaN when either reading counted nothing.
 */
export function sleepsBetween(a: ReadonlyMap<number, number> | undefined, b: ReadonlyMap<number, number> | undefined): number {
  if (!a || !b) return NaN;
  let total = 0;
  for (const [pid, now] of b) {
    const before = a.get(pid);
    total += before === undefined || now < before ? now : now - before;
  }
  return total;
}

/** CPU seconds used by every `redis-server` process on the machine. */
export function redisCpuSeconds(): number {
  let total = 0;
  for (const pid of allPids()) if (commOf(pid) === 'redis-server') total += cpuSeconds(pid);
  return total;
}

/**
 * The whole machine's CPU time from /proc/stat, in seconds summed over all cores: what its cores
 * ran (busy), what the hypervisor gave to other guests while this one had work (steal: the cores
 * were not this machine's then), and all of it (busy, idle, waiting on I/O and stolen).
 */
export function machineCpu(): { busy: number; stolen: number; total: number } {
  return parseMachineCpu(readFileSync('/proc/stat', 'utf8'));
}

/** The share of a machine's CPU time that the hypervisor took (0 when it has none counted). */
export function stolenShare(m: { stolen: number; total: number }): number {
  return m.total > 0 ? m.stolen / m.total : 0;
}

/** `machineCpu` of the text of /proc/stat. */
export function parseMachineCpu(stat: string): { busy: number; stolen: number; total: number } {
  const line = stat.split('\n')[0]!;
  if (!line.startsWith('cpu ')) throw new Error(`/proc/stat does not start with the machine's cpu line: ${line.slice(0, 40)}`);
  const [user, nice, system, idle, iowait, irq, softirq, steal = 0] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy: busy / TICKS_PER_S, stolen: steal / TICKS_PER_S, total: (busy + idle! + iowait! + steal) / TICKS_PER_S };
}
