import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { AUTH_SECRET, startSystem, type TestSystem } from '../support/system.ts';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;

/** The README's curl walkthrough: the first `sh` block of its section. */
function walkthrough(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Walk one order through its life with curl'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README.md has no sh block under "Walk one order through its life with curl"');
  return block;
}

interface Stated {
  line: string;
  status: number | undefined;
  /** `"key": "value"` pairs its comment quotes, which the answer must hold. */
  quoted: [string, string][];
}

/** Each `call` of the block (a command continued over lines is one), with the status and values its comment states. */
function statedCalls(block: string): Stated[] {
  const logical = block.replace(/\\\n/g, ' ').split('\n');
  return logical
    .filter((line) => /^call\s/.test(line))
    .map((line) => {
      const comment = /#\s*(.*)$/.exec(line.replace(/'[^']*'/g, "''"))?.[1] ?? '';
      const status = /^(\d{3})\b/.exec(comment)?.[1];
      return { line: line.slice(0, 120), status: status ? Number(status) : undefined, quoted: [...comment.matchAll(/"(\w+)": "([^"]+)"/g)].map((m) => [m[1]!, m[2]!] as [string, string]) };
    });
}

/**
 * The walkthrough of the README, run as written against a real service (the shell, curl and
 * `npm run -s token` as a reader would use them), on a database of its own: only the service's
 * and the gateway's addresses are put in. Each answer's status must be the one its comment
 * states, and the values its comment quotes must be in the answer.
 */
describe('the README walkthrough', function () {
  this.timeout(180_000);
  let sys: TestSystem;
  before(async () => {
    sys = await startSystem({ name: 'walkthrough' });
  });
  after(async () => {
    await sys?.close();
  });

  it('answers every call with the status the README states, and shows what it quotes', async () => {
    const block = walkthrough();
    const calls = statedCalls(block);
    expect(calls.length, 'calls in the walkthrough').to.be.at.least(20);
    expect(calls.filter((c) => c.status === undefined).map((c) => c.line), 'calls whose comment states no status').to.deep.equal([]);
    // The two addresses of `npm run up`, as the README writes them, become this system's.
    expect(block).to.include('API=http://127.0.0.1:3000\n').and.include('http://127.0.0.1:4010/_admin/ledger');
    const script = block.replace('API=http://127.0.0.1:3000\n', `API=${sys.baseUrl}\n`).replaceAll('http://127.0.0.1:4010', sys.gateway.url);

    const { stdout } = await run('bash', ['-c', script], {
      cwd: ROOT,
      env: { ...process.env, AUTH_SECRET, NODE_ENV: 'development' },
      timeout: 150_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(stdout, 'a wait that gave up').not.to.include('gave up waiting');
    const answers = stdout.split(/ {2}\[HTTP (\d{3})\]\n/);
    // split() with a group gives body, status, body, status, …, rest.
    const got: { body: string; status: number }[] = [];
    for (let i = 0; i + 1 < answers.length; i += 2) got.push({ body: answers[i]!, status: Number(answers[i + 1]) });
    expect(got.map((g) => g.status), stdout.slice(0, 2000)).to.have.length(calls.length);
    calls.forEach((call, i) => {
      expect(got[i]!.status, `${call.line}\n→ ${got[i]!.body.slice(0, 500)}`).to.equal(call.status);
      for (const [key, value] of call.quoted) expect(got[i]!.body, `${call.line}: "${key}": "${value}"`).to.include(`"${key}":"${value}"`);
    });
  });
});
