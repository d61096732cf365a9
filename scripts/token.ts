// Mints a development token: npm run token -- --role customer --sub c1 [--expires 12h]
import { parseArgs } from 'node:util';
import { ROLES, type Role } from '../src/actors/principal.ts';
import { loadConfig } from '../src/config.ts';
import { signToken } from '../src/http/auth.ts';

const { values } = parseArgs({
  options: { role: { type: 'string' }, sub: { type: 'string' }, expires: { type: 'string', default: '12h' } },
});
if (!values.role || !ROLES.includes(values.role as Role) || !values.sub) {
  console.error(`usage: npm run token -- --role <${ROLES.join('|')}> --sub <id> [--expires 12h]`);
  process.exit(2);
}
const config = loadConfig();
process.stdout.write(`${await signToken(config.AUTH_SECRET, { sub: values.sub, role: values.role as Role }, values.expires)}\n`);
