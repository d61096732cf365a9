import { z } from 'zod';
import { STATUS_OF } from './error-middleware.ts';
import type { Route } from './route.ts';
import { ErrorSchema } from './schemas.ts';

type JsonSchema = Record<string, unknown>;

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

const ERROR_CODE_OF_STATUS = Object.fromEntries(
  Object.entries(STATUS_OF).map(([code, status]) => [status, code]),
) as Record<number, string>;

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
    for (const [name, description] of Object.entries(route.requestHeaders ?? {})) {
      parameters.push({ name, in: 'header', required: false, description, schema: { type: 'string' } });
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
    for (const status of route.errors) {
      responses[String(status)] = {
        description: `error \`${ERROR_CODE_OF_STATUS[status] ?? 'error'}\``,
        ...(status === 503 && { headers: { 'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'string' } } } }),
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
