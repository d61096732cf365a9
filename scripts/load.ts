// The load generator: drives the mixed order lifecycle against a running service, from its own
// process. `npm run load -- --help` says how.
import { randomBytes } from 'node:crypto';
import { formatReport } from './load/report.ts';
import { ROUTES, type Route } from './load/route.ts';
import { runLoad, SetupError } from './load/runner.ts';
import { TARGET_NAMES, type TargetName } from './load/targets.ts';
import { DEV_AUTH_SECRET } from '../src/auth-secret.ts';
import { commandLine, usageError as refuse } from '../src/cli.ts';

const USAGE = `usage: npm run load -- --url <base URL> [options]

Drives order lifecycles against a running service, in a closed loop: each virtual user runs
lifecycles back to back. 85 % are full (place, pay, accept, start-cooking, finish-cooking, pick,
confirm-delivery), 10 % are cancelled after pay, 5 % rejected after pay, over --stores stores whose
menus it publishes first. It signs its own tokens (HS256, 1 h) with the service's AUTH_SECRET.

  --url <url>          base URL of the service; repeat it (or separate with commas) to spread the
                       requests over several processes                      (default http://127.0.0.1:3000)
  --route <how>        how requests are spread over several URLs: round-robin (each to the next, as
                       a Kubernetes Service does), or order (a request about an order to the URL
                       its order id hashes to, as an ingress hashing on the order id does; placing
                       an order still goes round-robin)                       (default round-robin)
  --target <t>         baedal | restate (the Restate ingress of bench/restate) | bare (a server that
                       answers a constant, for the HTTP ceiling)             (default baedal)
  --concurrency <n>    virtual users                                         (default 16)
  --rate <n>           commands started a second at most, over all users: the load at a set rate
                       (give enough users to reach it) rather than as fast as the users go
                                                                             (default: no limit)
  --duration <s>       measured seconds                                      (default 30)
  --warmup <s>         seconds run first and not measured                    (default 5)
  --stores <n>         stores the orders are spread over                     (default 10)
  --secret <s>         the service's AUTH_SECRET        (default $AUTH_SECRET, else the development default)
  --seed <n>           seed of the lifecycle mix                             (default 1)
  --timeout <ms>       deadline of one request                               (default 30000)
  --progress <s>       seconds between progress lines on stderr, 0 for none  (default 1)
  --no-verify          skip the final check that each lifecycle ended in its expected state
  --run-id <id>        prefix of the ids this run creates                    (default random)
  --json               machine-readable output on stdout: a line {"event":"measure"} when the
                       measured window opens, {"event":"drain"} when it closes, and the summary
                       as the last line; the human report then goes to stderr
  --quiet              no human report
  --help               this text

Exit status: 0 when the run finished and the final check found nothing wrong (refused requests are
reported, not fatal), 1 when the setup failed or an order ended in the wrong state, 2 on bad usage.`;

function usageError(message: string): never {
  return refuse('load', USAGE, message);
}

function wholeNumber(name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) usageError(`--${name} must be a whole number ≥ ${min}, not "${raw}"`);
  return n;
}

const v = commandLine('load', USAGE, {
  url: { type: 'string', multiple: true },
  target: { type: 'string', default: 'baedal' },
  route: { type: 'string', default: 'round-robin' },
  concurrency: { type: 'string', default: '16' },
  rate: { type: 'string' },
  duration: { type: 'string', default: '30' },
  warmup: { type: 'string', default: '5' },
  stores: { type: 'string', default: '10' },
  secret: { type: 'string' },
  seed: { type: 'string', default: '1' },
  timeout: { type: 'string', default: '30000' },
  progress: { type: 'string', default: '1' },
  'no-verify': { type: 'boolean', default: false },
  'run-id': { type: 'string' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
});
if (!TARGET_NAMES.includes(v.target as TargetName)) usageError(`--target must be one of ${TARGET_NAMES.join(', ')}, not "${v.target}"`);
const urls = (v.url ?? ['http://127.0.0.1:3000']).flatMap((u) => u.split(',')).map((u) => u.trim().replace(/\/+$/, '')).filter(Boolean);
for (const u of urls) {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    usageError(`--url "${u}" is not a URL`);
  }
  if (url.protocol !== 'http:' || (url.pathname !== '/' && url.pathname !== '') || url.search) usageError(`--url must be an http:// base URL without a path, not "${u}"`);
}
if (!ROUTES.includes(v.route as Route)) usageError(`--route must be one of ${ROUTES.join(', ')}, not "${v.route}"`);
const secret = v.secret ?? process.env.AUTH_SECRET ?? DEV_AUTH_SECRET;
if (secret.length < 16) usageError('--secret must be at least 16 characters, as the service requires');
const runId = v['run-id'] ?? `load-${randomBytes(3).toString('hex')}`;
if (!/^[A-Za-z0-9_-]{1,40}$/.test(runId)) usageError('--run-id may hold letters, digits, _ and - (at most 40)');

const options = {
  urls,
  route: v.route as Route,
  target: v.target as TargetName,
  concurrency: wholeNumber('concurrency', v.concurrency!, 1),
  ...(v.rate !== undefined && { rate: wholeNumber('rate', v.rate, 1) }),
  durationS: wholeNumber('duration', v.duration!, 1),
  warmupS: wholeNumber('warmup', v.warmup!, 0),
  stores: wholeNumber('stores', v.stores!, 1),
  secret,
  seed: wholeNumber('seed', v.seed!, 0),
  timeoutMs: wholeNumber('timeout', v.timeout!, 1),
  progressS: wholeNumber('progress', v.progress!, 0),
  verify: !v['no-verify'],
  runId,
};

const json = v.json!;
const say = (text: string) => (json ? process.stderr : process.stdout).write(`${text}\n`);

try {
  const summary = await runLoad({
    ...options,
    log: (line) => process.stderr.write(`${line}\n`),
    onPhase: (phase) => {
      if (json) process.stdout.write(`${JSON.stringify({ event: phase, at: Date.now() })}\n`);
    },
  });
  if (!v.quiet) say(formatReport(summary));
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exitCode = summary.verify && summary.verify.mismatches > 0 ? 1 : 0;
} catch (err) {
  if (!(err instanceof SetupError)) throw err;
  console.error(`load: ${err.message}`);
  process.exitCode = 1;
}
