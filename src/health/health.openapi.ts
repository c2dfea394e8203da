import type { SchemaObject } from '@nestjs/swagger';

/** One dependency's state; the other fields depend on the check (driver, workers, code, message…). */
const INDICATOR: SchemaObject = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['up', 'down'] } },
  additionalProperties: true,
};
const INDICATORS: SchemaObject = { type: 'object', additionalProperties: INDICATOR, description: 'By dependency: lifecycle, database, storage, palette, queue' };

export const LIVENESS_SCHEMA: SchemaObject = {
  type: 'object',
  required: ['status', 'uptimeSeconds'],
  additionalProperties: false,
  properties: { status: { type: 'string', enum: ['ok'] }, uptimeSeconds: { type: 'integer', minimum: 0, example: 42 } },
};

/** Terminus's report: `info` the dependencies that are up, `error` those that are down, `details` all. */
export const READY_SCHEMA: SchemaObject = {
  type: 'object',
  required: ['status', 'info', 'error', 'details'],
  properties: { status: { type: 'string', enum: ['ok'] }, info: INDICATORS, error: INDICATORS, details: INDICATORS },
  example: { status: 'ok', info: { database: { status: 'up' } }, error: {}, details: { database: { status: 'up' } } },
};

/** The same report, with the error fields of every other answer. */
export const NOT_READY_SCHEMA: SchemaObject = {
  type: 'object',
  required: ['statusCode', 'code', 'message', 'status', 'info', 'error', 'details'],
  properties: {
    statusCode: { type: 'integer', enum: [503] },
    code: { type: 'string', enum: ['NOT_READY'] },
    message: { type: 'string' },
    status: { type: 'string', enum: ['error'] },
    info: INDICATORS,
    error: INDICATORS,
    details: INDICATORS,
  },
  example: {
    statusCode: 503,
    code: 'NOT_READY',
    message: 'One or more dependencies are down',
    status: 'error',
    info: { database: { status: 'up' } },
    error: { lifecycle: { status: 'down', message: 'shutting down' } },
    details: { database: { status: 'up' }, lifecycle: { status: 'down', message: 'shutting down' } },
  },
};
