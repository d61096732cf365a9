// Mints a development token: npm run token -- --role customer --sub c1 [--expires 12h]
import { ROLES, type Role } from '../src/actors/principal.ts';
import { commandLine, usageError } from '../src/cli.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { durationSeconds, signToken } from '../src/http/auth.ts';
import { ID_PATTERN, ID_RULE } from '../src/http/schemas.ts';

const USAGE = `usage: npm run -s token -- --role <${ROLES.join('|')}> --sub <id> [--expires 12h]

Prints a token signed with AUTH_SECRET (the development secret when unset), carrying
AUTH_ISSUER and AUTH_AUDIENCE when those are set.
  --role     the caller's role
  --sub      the caller's id: ${ID_RULE}
  --expires  lifetime: 90s, 30m, 12h or 1d (default 12h; at most AUTH_MAX_TTL_SECONDS, 24h by default)
  --help     this text`;

function fail(message: string): never {
  return usageError('token', USAGE, message);
}

const values = commandLine('token', USAGE, {
  role: { type: 'string' },
  sub: { type: 'string' },
  expires: { type: 'string', default: '12h' },
});
if (!values.role || !ROLES.includes(values.role as Role)) fail(`--role must be one of ${ROLES.join(', ')}`);
if (!values.sub || !ID_PATTERN.test(values.sub)) fail(`--sub must be ${ID_RULE}`);

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  throw err;
}
const seconds = durationSeconds(values.expires ?? '12h');
if (seconds === undefined || seconds < 1) fail(`--expires must be a lifetime like 90s, 30m, 12h or 1d, not ${values.expires}`);
if (seconds > config.AUTH_MAX_TTL_SECONDS) fail(`--expires ${values.expires} is longer than AUTH_MAX_TTL_SECONDS (${config.AUTH_MAX_TTL_SECONDS} s)`);

const token = await signToken(config.AUTH_SECRET, { sub: values.sub, role: values.role as Role }, `${seconds}s`, {
  issuer: config.AUTH_ISSUER,
  audience: config.AUTH_AUDIENCE,
});
process.stdout.write(`${token}\n`);
