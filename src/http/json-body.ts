import { bodyParser } from '@koa/bodyparser';
import type { Context, Middleware } from 'koa';
import { DomainError } from '../errors.ts';

export function hasBody(ctx: Context): boolean {
  return Number(ctx.get('content-length') || 0) > 0 || ctx.get('transfer-encoding') !== '';
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Why a Content-Type is not `application/json` in UTF-8, or undefined when it is. Only that exact
 * type is taken (`application/vnd.x+json` and friends are not read as JSON), and a declared charset
 * must be utf-8: a body is always decoded as UTF-8, so any other would be misread.
 */
export function mediaTypeProblem(header: string): string | undefined {
  const [type = '', ...params] = header.split(';');
  if (type.trim().toLowerCase() !== 'application/json') return 'the request body must be application/json';
  for (const param of params) {
    if (param.trim() === '') continue;
    const eq = param.indexOf('=');
    const name = param.slice(0, eq).trim().toLowerCase();
    let value = param.slice(eq + 1).trim();
    if (eq < 0 || !TOKEN.test(name)) return 'the Content-Type header is malformed';
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name === 'charset' && value.toLowerCase() !== 'utf-8') return `the request body must be UTF-8, not ${value.slice(0, 40)}`;
  }
  return undefined;
}

/**
 * The path of the first key that appears twice in one object of `json`, or undefined. JSON.parse
 * keeps the last of duplicate keys while other parsers (a proxy, a WAF, a log reader) may keep the
 * first, so a body with duplicates could mean two things: it is refused. `json` must be valid JSON.
 */
export function duplicateKeyPath(json: string): (string | number)[] | undefined {
  interface Frame {
    keys: Set<string> | undefined; // undefined for an array
    path: (string | number)[];
    index: number;
    expectKey: boolean;
    lastKey: string;
  }
  const stack: Frame[] = [];
  const childPath = (): (string | number)[] => {
    const parent = stack[stack.length - 1];
    if (!parent) return [];
    return [...parent.path, parent.keys ? parent.lastKey : parent.index];
  };
  let i = 0;
  while (i < json.length) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (j < json.length && json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return [...top.path, key];
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      stack.push({ keys: c === '{' ? new Set() : undefined, path: childPath(), index: 0, expectKey: c === '{', lastKey: '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
      else if (top) top.index += 1;
    }
    i += 1;
  }
  return undefined;
}

/**
 * Reads a JSON body within `limit` (413), refusing anything but `application/json` in UTF-8 and
 * without Content-Encoding (415), and JSON with duplicate keys (400), before any handler runs.
 */
export function jsonBody(limit: string): Middleware {
  const parse = bodyParser({ enableTypes: ['json'], jsonLimit: limit, jsonStrict: true, encoding: 'utf-8' });
  return async (ctx, next) => {
    if (hasBody(ctx)) {
      const contentType = ctx.get('content-type');
      const problem = contentType ? mediaTypeProblem(contentType) : 'the request body must be application/json';
      if (problem) throw new DomainError('unsupported_media_type', problem, { contentType: contentType.slice(0, 100) || null });
      const encoding = ctx.get('content-encoding').trim().toLowerCase();
      if (encoding !== '' && encoding !== 'identity') {
        throw new DomainError('unsupported_media_type', 'a request body must not be compressed (Content-Encoding)', {
          contentEncoding: encoding.slice(0, 40),
        });
      }
    }
    await parse(ctx, async () => {
      const raw = (ctx.request as { rawBody?: unknown }).rawBody;
      const duplicate = typeof raw === 'string' ? duplicateKeyPath(raw) : undefined;
      if (duplicate) {
        const field = ['body', ...duplicate.map(String)].join('.').slice(0, 200);
        throw new DomainError('invalid_body', `invalid body: ${field} appears more than once`, {
          issues: [{ field, message: 'duplicate key' }],
        });
      }
      await next();
    });
  };
}
