// The command line of every script: options read strictly, --help printing the usage, and bad usage
// refused with the message, the usage and exit status 2.
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/** What parseArgs makes of `options` (and --help), strictly and without positional arguments. */
export type OptionValues<O extends Options> = ReturnType<typeof parseArgs<{ options: O & typeof HELP; strict: true; allowPositionals: false }>>['values'];

/** Refuses a command line: `name: message`, then the usage, on stderr; exit status 2. */
export function usageError(name: string, usage: string, message: string): never {
  console.error(`${name}: ${message}\n\n${usage}`);
  process.exit(2);
}

/**
 * Reads the command line's options (no positional arguments); prints the usage and exits 0 on
 * --help or -h, refuses an unknown or malformed option with usageError.
 */
export function commandLine<const O extends Options>(name: string, usage: string, options: O, args?: string[]): OptionValues<O> {
  let values: OptionValues<O>;
  try {
    values = parseArgs({ args, options: { ...options, ...HELP }, strict: true, allowPositionals: false }).values as OptionValues<O>;
  } catch (err) {
    return usageError(name, usage, err instanceof Error ? err.message : String(err));
  }
  if ((values as { help?: boolean }).help) {
    console.log(usage);
    process.exit(0);
  }
  return values;
}

/**
 * A progress line on stderr, `label [#####-----]  50% done/total detail`: redrawn in place on a
 * terminal (at most every 100 ms, and once more when `final`), printed at every further 10 %
 * otherwise (a log, a CI job).
 */
export function progressBar(label: string): (done: number, total: number, detail: string, final?: boolean) => void {
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  let lastTenth = -1;
  return (done, total, detail, final = false) => {
    const ratio = total === 0 ? 1 : Math.min(1, done / total);
    const width = 30;
    const filled = Math.round(ratio * width);
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${done}/${total} ${detail}`;
    if (tty) {
      if (!final && Date.now() - lastDraw < 100) return;
      lastDraw = Date.now();
      process.stderr.write(`\r${line}\u001b[K${final ? '\n' : ''}`);
      return;
    }
    const tenth = Math.floor(ratio * 10);
    if (tenth > lastTenth) {
      lastTenth = tenth;
      process.stderr.write(`${line}\n`);
    }
  };
}
