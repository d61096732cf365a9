import { z } from 'zod';
import { STATUS_OF } from './error-middleware.ts';
import { headersSchemaOf, type Route } from './route.ts';
import { ErrorSchema } from './schemas.ts';

type JsonSchema = Record<string, unknown>;

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

const ERROR_CODES_OF_STATUS: Record<number, string[]> = {};
for (const [code, status] of Object.entries(STATUS_OF)) (ERROR_CODES_OF_STATUS[status] ??= []).push(code);

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
    const responses: Record<string, unknown> = {};
    for (const [status, spec] of Object.entries(route.responses)) {
      const contentType = spec.contentType ?? 'application/json';
      responses[status] = {
        description: spec.description,
        ...(spec.headers && {
          headers: Object.fromEntries(Object.entries(spec.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])),
        }),
        ...(spec.schema
          ? { content: { [contentType]: { schema: toSchema(spec.schema, 'output') } } }
          : spec.contentType && { content: { [contentType]: { schema: { type: 'string' } } } }),
      };
    }
    // Every route refuses query parameters it does not take; every route with a token is rate limited.
    const errors = new Set([...route.errors, 400, ...(route.auth ? [401, 429] : [])]);
    for (const status of [...errors].sort((a, b) => a - b)) {
      responses[String(status)] = {
        description: `error ${(ERROR_CODES_OF_STATUS[status] ?? ['error']).map((c) => `\`${c}\``).join(' or ')}`,
        ...((status === 503 || status === 429) && { headers: { 'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'string' } } } }),
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
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
    info: { ...info, description: 'Baedal: the food-delivery order lifecycle as persisted actors.' },
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Error: toSchema(ErrorSchema, 'output') },
    },
  };
}
