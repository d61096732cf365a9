import { z } from 'zod';
import { STATUS_OF } from './error-middleware.ts';
import { PROBE_PATHS } from './rate-limit.ts';
import { headersSchemaOf, type Route } from './route.ts';
import { ErrorSchema } from './answer-schemas.ts';

type JsonSchema = Record<string, unknown>;

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

const ERROR_CODES_OF_STATUS: Record<number, string[]> = {};
for (const [code, status] of Object.entries(STATUS_OF)) (ERROR_CODES_OF_STATUS[status] ??= []).push(code);

/** The error body of one status: the shape every error has, with the codes that status carries. */
const errorSchemaOf = (status: number): JsonSchema => {
  const codes = ERROR_CODES_OF_STATUS[status] ?? [];
  return toSchema(
    ErrorSchema.extend({ error: ErrorSchema.shape.error.extend({ code: codes.length > 0 ? z.enum(codes as [string, ...string[]]) : z.string() }) }),
    'output',
  );
};

const header = (description: string, schema: JsonSchema = { type: 'string' }) => ({ description, schema });
/** On every answer, errors included. */
const REQUEST_ID = { 'X-Request-Id': header('the id the service gave this request (in its log lines and the journal)') };
const RETRY_AFTER = { 'Retry-After': header('seconds to wait before retrying', { type: 'string', pattern: '^[0-9]+$' }) };

/** Why each status can come from any route of a kind, beyond what the route itself says. */
const ERROR_WHY: Record<number, string> = {
  400: 'invalid query, header or body (`details.issues` names each bad field); a query parameter the route does not take',
  401: 'no token, or a bad or expired one',
  404: 'no such resource; a malformed id is answered like an unknown one',
  413: 'body over the limit',
  415: 'a body that is not application/json in UTF-8',
  429: 'over the rate limit (per token, or per client address without an accepted token)',
  500: 'a fault of the service; `details.requestId` finds it in the log',
  503: 'a dependency (PostgreSQL, or the payment gateway) is away for a moment; nothing changed',
};

/**
 * The statuses a route can answer besides those it declares: every route refuses query
 * parameters (400) and can fail (500); a route with a token is authenticated (401), rate
 * limited (429) and reads PostgreSQL (503); a public route, but the probes, is limited per client
 * address (429); a path id that is malformed is 404; a body can be too large (413) or of another
 * media type (415); a document served with an ETag answers 304 to If-None-Match.
 */
export function statusesOf(route: Route): number[] {
  const statuses = new Set<number>([...Object.keys(route.responses).map(Number), ...route.errors, 400, 500]);
  if (route.auth) for (const s of [401, 429, 503]) statuses.add(s);
  else if (!PROBE_PATHS.includes(route.path)) statuses.add(429);
  if (route.params) statuses.add(404);
  if (route.body) for (const s of [413, 415]) statuses.add(s);
  if (route.conditional) statuses.add(304);
  return [...statuses].sort((a, b) => a - b);
}

const DESCRIPTION = `Baedal: the food-delivery order lifecycle as persisted actors.

Besides what each operation lists, the service answers: 404 \`not_found\` for a path it does not have
(paths are case-sensitive, and a trailing slash names another path); 405 \`method_not_allowed\` with
\`Allow\` for a method a path does not take (OPTIONS answers 200 with \`Allow\`, HEAD is GET without the
body); 501 \`not_implemented\` for a method it does not know; 429 \`rate_limited\` for a client address
over its budget of requests without an accepted token. Every error is
\`{ "error": { "code", "message", "details" } }\`, and every answer carries \`X-Request-Id\`.
Patterns are ECMA-262 regular expressions read with the \`u\` flag: a character class takes a code
point, \`\\p{…}\` names a Unicode category, and lengths count code points.`;

/** The OpenAPI 3.1 document, built from the same route table and zod schemas that serve requests. */
export function buildOpenApi(routes: readonly Route[], info: { title: string; version: string }): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const parameters: unknown[] = [];
    const addObjectParams = (schema: z.ZodType | undefined, where: 'path' | 'query') => {
      if (!schema) return;
      const json = toSchema(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
      for (const [name, prop] of Object.entries(json.properties ?? {})) {
        parameters.push({ name, in: where, required: where === 'path' || (json.required ?? []).includes(name), schema: prop });
      }
    };
    addObjectParams(route.params, 'path');
    addObjectParams(route.query, 'query');
    const headers = headersSchemaOf(route);
    const headerJson = headers ? (toSchema(headers, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] }) : {};
    for (const [name, description] of Object.entries(route.requestHeaders ?? {})) {
      const schema = headerJson.properties?.[name.toLowerCase()] ?? { type: 'string' };
      parameters.push({ name, in: 'header', required: (headerJson.required ?? []).includes(name.toLowerCase()), description, schema });
    }
    if (route.conditional) {
      parameters.push({ name: 'If-None-Match', in: 'header', required: false, description: 'an ETag of this document: 304 when it is still the current one', schema: { type: 'string' } });
    }
    const responses: Record<string, unknown> = {};
    for (const status of statusesOf(route)) {
      const spec = route.responses[status];
      if (spec) {
        const contentType = spec.contentType ?? 'application/json';
        responses[status] = {
          description: spec.description,
          headers: {
            ...REQUEST_ID,
            ...(spec.headers && Object.fromEntries(Object.entries(spec.headers).map(([h, d]) => [h, header(d)]))),
            ...(route.conditional && { ETag: header('the entity tag of the document') }),
          },
          ...(spec.schema ? { content: { [contentType]: { schema: toSchema(spec.schema, 'output') } } } : spec.contentType && { content: { [contentType]: { schema: { type: 'string' } } } }),
        };
      } else if (status === 304) {
        responses[status] = { description: 'not modified: the If-None-Match named the current ETag (no body)', headers: { ...REQUEST_ID, ETag: header('the entity tag of the document') } };
      } else {
        const codes = (ERROR_CODES_OF_STATUS[status] ?? []).map((c) => `\`${c}\``).join(' or ');
        responses[status] = {
          description: `error ${codes}${ERROR_WHY[status] ? `: ${ERROR_WHY[status]}` : ''}`,
          headers: { ...REQUEST_ID, ...((status === 503 || status === 429) && RETRY_AFTER) },
          content: { 'application/json': { schema: errorSchemaOf(status) } },
        };
      }
    }
    (paths[path] ??= {})[route.method] = {
      summary: route.summary,
      tags: [route.tag],
      operationId: `${route.method}${path.replace(/[{}]/g, '').replace(/[/-](\w)/g, (_, c: string) => c.toUpperCase())}`,
      ...(route.auth ? { security: [{ bearerAuth: [] }] } : { security: [] }),
      ...(parameters.length > 0 && { parameters }),
      ...(route.body && {
        requestBody: { required: route.bodyRequired ?? false, content: { 'application/json': { schema: toSchema(route.body, 'input') } } },
      }),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: { ...info, description: DESCRIPTION },
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT (three canonical base64url parts)' } },
      schemas: { Error: toSchema(ErrorSchema, 'output') },
    },
  };
}
