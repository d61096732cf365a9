import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { buildOpenApi } from '../../src/http/openapi.ts';
import type { Route } from '../../src/http/route.ts';

// ajv-formats is CommonJS: under ESM its function is the module's `default`.
const addFormats = addFormatsModule.default;

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, unknown> };
}

export interface Operation {
  parameters?: { name: string; in: 'path' | 'query' | 'header'; required: boolean; schema: Record<string, unknown> }[];
  requestBody?: { required: boolean; content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>;
  security: unknown[];
}

/** The methods Koa's router knows (others are 501), as its `allowedMethods` answers them. */
const KNOWN_METHODS = ['HEAD', 'OPTIONS', 'GET', 'PUT', 'PATCH', 'POST', 'DELETE'];

/** A JSON-Schema validator for the document's schemas: 2020-12, formats, `u`-flag patterns. */
export function schemaValidator(doc: OpenApiDocument): (schema: Record<string, unknown>) => ValidateFunction {
  const ajv = new Ajv2020({ strict: false, allErrors: true, unicodeRegExp: true });
  addFormats(ajv);
  ajv.addSchema({ $id: 'doc', components: doc.components ?? {} });
  const compiled = new Map<string, ValidateFunction>();
  return (schema) => {
    const key = JSON.stringify(schema);
    let fn = compiled.get(key);
    if (!fn) {
      // Refs in the document are `#/components/...`; they resolve against the document's components.
      const rewritten = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/')) as Record<string, unknown>;
      fn = ajv.compile(rewritten);
      compiled.set(key, fn);
    }
    return fn;
  };
}

/** The document's operation for `method path`, with the path's template, or why there is none. */
export function findOperation(doc: OpenApiDocument, method: string, path: string): { template: string; operation?: Operation; pathExists: boolean } {
  const bare = path.split('?')[0]!;
  const templates = Object.keys(doc.paths);
  const matches = (template: string) => new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`).test(bare);
  // A path of literals wins over one with parameters (as the router takes the first it was given).
  const template = templates.find((t) => t === bare) ?? templates.find(matches);
  if (!template) return { template: bare, pathExists: false };
  const m = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
  return { template, operation: doc.paths[template]![m], pathExists: true };
}

interface Checked {
  method: string;
  path: string;
  status: number;
  contentType: string;
  body: unknown;
}

/**
 * Checks answers against the OpenAPI document of the service that gave them: the status must
 * be one the operation lists (or, outside the operations, what the document's description
 * promises: 404 for an unknown path, 405 for a method the path does not take, 501 for an
 * unknown method, 429 for a client over its budget), and a JSON body must match the schema of
 * that status. Violations are collected; the root hook fails the run with them.
 */
export class ContractChecker {
  private readonly services = new Map<string, Promise<{ doc: OpenApiDocument; validator: ReturnType<typeof schemaValidator> } | undefined>>();
  readonly violations: string[] = [];
  checked = 0;

  /** An in-process app: its document is built from its route table. */
  registerRoutes(baseUrl: string, routes: readonly Route[]): () => void {
    const doc = buildOpenApi(routes, { title: 'Baedal API', version: 'test' }) as unknown as OpenApiDocument;
    return this.register(baseUrl, Promise.resolve({ doc, validator: schemaValidator(doc) }));
  }

  /** A service process: its document is the one it serves. */
  registerServed(baseUrl: string): () => void {
    return this.register(
      baseUrl,
      fetch(`${baseUrl}/openapi.json`)
        .then((res) => res.json() as Promise<OpenApiDocument>)
        .then((doc) => ({ doc, validator: schemaValidator(doc) }))
        .catch(() => undefined),
    );
  }

  /** Holds `baseUrl`'s answers to `entry`'s document; the function returned ends that, unless another service registered there since. */
  private register(baseUrl: string, entry: Promise<{ doc: OpenApiDocument; validator: ReturnType<typeof schemaValidator> } | undefined>): () => void {
    this.services.set(baseUrl, entry);
    return () => {
      if (this.services.get(baseUrl) === entry) this.services.delete(baseUrl);
    };
  }

  /**
   * What listens at `baseUrl` is no longer that service (it closed, or something else took the
   * port): answers from there are not held to its document any more.
   */
  forget(baseUrl: string): void {
    this.services.delete(baseUrl);
  }

  async check(baseUrl: string, answer: Checked): Promise<void> {
    const service = await this.services.get(baseUrl);
    if (!service) return;
    this.checked += 1;
    const problem = checkAnswer(service.doc, service.validator, answer);
    if (problem) this.violations.push(`${answer.method} ${answer.path.slice(0, 200)} → ${answer.status}: ${problem}`);
  }
}

/** Why an answer breaks the document, or undefined when it keeps it. */
export function checkAnswer(doc: OpenApiDocument, validator: ReturnType<typeof schemaValidator>, a: Checked): string | undefined {
  const method = a.method.toUpperCase();
  const { operation, pathExists } = findOperation(doc, method, a.path);
  const errorShape = (allowed: number[]) => {
    if (!allowed.includes(a.status)) return `not a status the document promises here (${allowed.join(', ')})`;
    if (method === 'HEAD') return undefined;
    const validate = validator({ $ref: '#/components/schemas/Error' });
    return validate(a.body) ? undefined : `not the error shape: ${JSON.stringify(validate.errors).slice(0, 300)}`;
  };
  if (!operation) {
    if (!KNOWN_METHODS.includes(method)) return errorShape([501, 429]);
    if (!pathExists) return errorShape([404, 429]);
    if (method === 'OPTIONS') return [200, 204].includes(a.status) || a.status === 429 ? undefined : `OPTIONS answered ${a.status}`;
    return errorShape([405, 429]);
  }
  const response = operation.responses[String(a.status)];
  if (!response) return `not among the documented statuses ${Object.keys(operation.responses).join(', ')}`;
  if (method === 'HEAD' || a.status === 304) return undefined;
  const content = response.content;
  if (!content) return a.body === undefined || a.body === '' ? undefined : 'a body where the document says none';
  const [type, media] = Object.entries(content)[0]!;
  if (!a.contentType.startsWith(type)) return `content type ${a.contentType}, documented ${type}`;
  if (type !== 'application/json') return undefined;
  const validate = validator(media.schema);
  return validate(a.body) ? undefined : `body does not match the document: ${JSON.stringify(validate.errors).slice(0, 500)}`;
}

/** One checker for the whole run (the root hook reports it). */
export const contract = new ContractChecker();
