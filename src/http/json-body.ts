import type { Context, Middleware } from 'koa';
import getRawBody from 'raw-body';
import { DomainError } from '../errors.ts';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body, set by `jsonBody` on routes that take one. */
    body?: unknown;
  }
}

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
    parent: Frame | undefined;
    /** Where this value sits in its parent: a key or an index. */
    at: string | number;
    keys: Set<string> | undefined; // undefined for an array
    index: number;
    expectKey: boolean;
    lastKey: string;
  }
  const pathOf = (frame: Frame | undefined, tail: (string | number)[]): (string | number)[] => {
    const path = tail;
    for (let f = frame; f?.parent; f = f.parent) path.unshift(f.at);
    return path;
  };
  let top: Frame | undefined;
  let i = 0;
  while (i < json.length) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (j < json.length && json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return pathOf(top, [key]);
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      const at = top ? (top.keys ? top.lastKey : top.index) : '';
      top = { parent: top, at, keys: c === '{' ? new Set() : undefined, index: 0, expectKey: c === '{', lastKey: '' };
    } else if (c === '}' || c === ']') {
      top = top?.parent;
    } else if (c === ',' && top) {
      if (top.keys) top.expectKey = true;
      else top.index += 1;
    }
    i += 1;
  }
  return undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function invalidBody(message: string, issue: string): DomainError {
  return new DomainError('invalid_body', message, { issues: [{ field: 'body', message: issue }] });
}

/** Reads the body's bytes (413 over `limit`) and parses them as UTF-8 JSON, an object or an array. */
async function readJson(ctx: Context, limit: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await getRawBody(ctx.req, { length: ctx.get('content-length') || undefined, limit });
  } catch (err) {
    const { status, type } = err as { status?: number; type?: string };
    if (status === 413) throw new DomainError('payload_too_large', 'request body is too large', { limit });
    if (status === 400) throw invalidBody(`request body could not be read (${type ?? 'unreadable'})`, 'unreadable');
    throw err;
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw invalidBody('request body is not valid UTF-8', 'not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalidBody('request body is not valid JSON', 'not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object') throw invalidBody('request body must be a JSON object or array', 'not an object or array');
  const duplicate = duplicateKeyPath(text);
  if (duplicate) {
    const field = ['body', ...duplicate.map(String)].join('.').slice(0, 200);
    throw new DomainError('invalid_body', `invalid body: ${field} appears more than once`, { issues: [{ field, message: 'duplicate key' }] });
  }
  return parsed;
}

/**
 * Reads a JSON body within `limit` (413) before any handler runs: `application/json` in UTF-8
 * only, without Content-Encoding (415); bytes that are not UTF-8, text that is not JSON, JSON
 * that is not an object or array, and objects with a key twice are refused (400).
 */
export function jsonBody(limit: string): Middleware {
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
      ctx.request.body = await readJson(ctx, limit);
    }
    await next();
  };
}
