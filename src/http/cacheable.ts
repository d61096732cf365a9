import { createHash } from 'node:crypto';
import type { Context } from 'koa';

/** A body built once and kept in memory, with its entity tag. */
export interface Cacheable {
  body: Buffer;
  etag: string;
}

export function cacheable(body: Buffer | string): Cacheable {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return { body: bytes, etag: `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 27)}"` };
}

/**
 * Sends a body kept in memory, public and the same for everyone, with its ETag and
 * `Cache-Control: no-cache` (a cache may keep it but asks again, so a deploy shows at once):
 * a request whose If-None-Match names the ETag gets 304 without the body.
 */
export function sendCacheable(ctx: Context, type: string, file: Cacheable): void {
  ctx.set('Cache-Control', 'no-cache');
  ctx.type = type;
  ctx.etag = file.etag;
  ctx.status = 200;
  if (noneMatch(ctx.get('if-none-match'), file.etag)) {
    ctx.status = 304;
    return;
  }
  ctx.body = file.body;
}

/**
 * Whether `If-None-Match` names the current entity tag (or is `*`), compared weakly as RFC 9110
 * § 13.1.2 asks of an origin server. (Koa's `ctx.fresh` also requires the request to allow a cached
 * answer, which fetch() never does once it sends If-None-Match itself: it adds `Cache-Control: no-cache`.)
 */
function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => opaque(tag) === opaque(etag));
}
