import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

/** The parts of an OpenAPI 3.0 document read here. */
export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, OperationObject>>;
  components?: { schemas?: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
}
export interface OperationObject {
  operationId?: string;
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string; required?: boolean; schema?: unknown }[];
  requestBody?: { content: Record<string, { schema?: unknown }> };
  responses: Record<string, ResponseObject>;
}
export interface ResponseObject {
  description: string;
  content?: Record<string, { schema?: unknown }>;
  headers?: Record<string, { required?: boolean; schema?: unknown }>;
}

/** A real answer, as far as the document describes it. */
export interface RealResponse {
  status: number;
  headers: Headers;
  /** The body as received (bytes); JSON bodies are parsed here. */
  body: Buffer;
}

export const HTTP_METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/** A JSON pointer as a URI fragment: `pointer('paths', '/a/{id}')` → `#/paths/~1a~1%7Bid%7D`. */
export const pointer = (...parts: (string | number)[]): string =>
  `#/${parts.map((p) => encodeURIComponent(String(p).replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`;

/**
 * Checks real answers against an OpenAPI 3.0 document with ajv: the status must be documented for
 * the operation, the media type too, a JSON body must match its schema, required headers must be
 * there and every documented header must match its schema. It remembers which documented
 * (operation, status) pairs a real answer covered.
 */
export class OpenApiContract {
  private readonly ajv: Ajv;
  private readonly compiled = new Map<string, ValidateFunction>();
  readonly covered = new Set<string>();

  constructor(readonly document: OpenApiDocument) {
    // `strict: false`: the document carries OpenAPI keywords (example, nullable…) that are not JSON Schema.
    this.ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    addFormats(this.ajv);
    this.ajv.addSchema(document as object, 'openapi');
  }

  /** A validator for the schema at `ref` (a pointer into the document); its own `$ref`s resolve in the document. */
  validator(ref: string): ValidateFunction {
    let validate = this.compiled.get(ref);
    if (!validate) {
      validate = this.ajv.compile({ $ref: `openapi${ref}` });
      this.compiled.set(ref, validate);
    }
    return validate;
  }

  /** Problems of `value` against the schema at `ref`, in ajv's words; empty when it matches. */
  problems(ref: string, value: unknown): string[] {
    const validate = this.validator(ref);
    return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`);
  }

  /** Every documented (method path status), e.g. `post /api/v1/generations 201`. */
  documented(): string[] {
    return Object.entries(this.document.paths).flatMap(([path, item]) =>
      HTTP_METHODS.flatMap((method) => Object.keys(item[method]?.responses ?? {}).map((status) => `${method} ${path} ${status}`)),
    );
  }

  /**
   * What is wrong with `res` as an answer of `method path` (the path template); empty when the
   * document describes it exactly. Records the pair as covered when it is documented.
   */
  check(method: string, path: string, res: RealResponse): string[] {
    const operation = this.document.paths[path]?.[method];
    if (!operation) return [`${method} ${path} is not in the document`];
    const response = operation.responses[String(res.status)];
    if (!response) return [`${method} ${path} answered ${res.status}, which the document does not list (it lists ${Object.keys(operation.responses).join(', ')})`];
    this.covered.add(`${method} ${path} ${res.status}`);
    const at = (...parts: (string | number)[]) => pointer('paths', path, method, 'responses', res.status, ...parts);
    const problems: string[] = [];

    for (const [name, header] of Object.entries(response.headers ?? {})) {
      const value = res.headers.get(name);
      if (value === null) {
        if (header.required) problems.push(`header ${name} is required but missing`);
        continue;
      }
      const type = (header.schema as { type?: string } | undefined)?.type;
      const parsed = type === 'integer' || type === 'number' ? Number(value) : value;
      problems.push(...this.problems(at('headers', name, 'schema'), parsed).map((p) => `header ${name}: ${p}`));
    }

    const contentType = res.headers.get('content-type')?.split(';')[0].trim().toLowerCase();
    if (!response.content) return problems;
    if (!contentType || !response.content[contentType]) {
      return [...problems, `content type ${contentType ?? '(none)'} is not documented (${Object.keys(response.content).join(', ')})`];
    }
    if (contentType === 'application/json') {
      let body: unknown;
      try {
        body = JSON.parse(res.body.toString('utf8'));
      } catch {
        return [...problems, 'the body is not JSON'];
      }
      problems.push(...this.problems(at('content', contentType, 'schema'), body).map((p) => `body${p}`));
    }
    return problems;
  }
}

/** Every schema in the document that carries an `example`, by pointer (for checking examples against their own schema). */
export function schemasWithExamples(document: OpenApiDocument): { ref: string; example: unknown }[] {
  const found: { ref: string; example: unknown }[] = [];
  const visit = (node: unknown, parts: (string | number)[]) => {
    if (Array.isArray(node)) return node.forEach((child, i) => visit(child, [...parts, i]));
    if (node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    const isSchema = ['type', '$ref', 'properties', 'enum', 'items', 'allOf', 'oneOf', 'anyOf'].some((k) => k in record);
    if (isSchema && 'example' in record) found.push({ ref: pointer(...parts), example: record.example });
    for (const [key, child] of Object.entries(record)) if (key !== 'example') visit(child, [...parts, key]);
  };
  visit(document.paths, ['paths']);
  visit(document.components?.schemas ?? {}, ['components', 'schemas']);
  return found;
}

/** Every schema of the document with `type: number` (not integer), by pointer. */
export function numberSchemas(document: OpenApiDocument): string[] {
  const found: string[] = [];
  const visit = (node: unknown, parts: (string | number)[]) => {
    if (Array.isArray(node)) return node.forEach((child, i) => visit(child, [...parts, i]));
    if (node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if (record.type === 'number') found.push(pointer(...parts));
    for (const [key, child] of Object.entries(record)) if (key !== 'example') visit(child, [...parts, key]);
  };
  visit(document, []);
  return found;
}
