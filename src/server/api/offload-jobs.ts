// The mutations that may run off the event loop (src/server/api/offload.ts), as plain messages: the
// same domain functions run them inline or in the worker.
import { ZodError } from 'zod';
import type { CommitEvent, Store } from '../db/store.js';
import type { Service, Stack } from '../../model/resources.js';
import { DroverError } from '../../common/errors.js';
import { addToStack, containersOf, createStack, exportStack, removeStack, stackSpecOf, upStack, type StackInput, type StackUpInput, type StackUpOutcome } from '../domain/stacks.js';
import type { ComposeFiles, StackSpec } from '../compose/spec.js';
import { createService, updateService, type ServiceInput, type ServicePatch } from '../domain/services.js';
import { zodToError } from './http.js';

export type Job =
  | { op: 'createStack'; input: StackInput }
  | { op: 'addToStack'; stackId: string; input: { dockerCompose: string; rancherCompose?: string; answers?: Record<string, string> } }
  | { op: 'upStack'; stackId: string; input: StackUpInput }
  | { op: 'createService'; stackId: string; input: ServiceInput }
  | { op: 'updateService'; serviceId: string; patch: ServicePatch }
  | { op: 'removeStack'; stackId: string }
  | { op: 'exportStack'; stackId: string };

export type JobResult<J extends Job> = J['op'] extends 'createStack'
  ? Stack
  : J['op'] extends 'addToStack'
    ? Service[]
    : J['op'] extends 'upStack'
    ? StackUpOutcome[]
    : J['op'] extends 'removeStack'
      ? null
      : J['op'] extends 'exportStack'
        ? ComposeFiles
        : Service;

export type WireError =
  | { kind: 'drover'; json: Record<string, unknown>; status: number; code: string; message: string; fieldName?: string }
  | { kind: 'sqlite'; code: string; message: string; stack?: string }
  | { kind: 'other'; message: string; stack?: string };

export type WorkerReply =
  | { id: number; ok: true; result: unknown; events: CommitEvent[] }
  | { id: number; ok: false; error: WireError; events: CommitEvent[] };

/** Runs a job; `spec` is its compose files when `jobSize` parsed them already (inline jobs). */
export function execute<J extends Job>(store: Store, job: J, spec?: StackSpec): JobResult<J> {
  switch (job.op) {
    case 'createStack':
      return createStack(store, job.input, spec) as JobResult<J>;
    case 'addToStack':
      return addToStack(store, job.stackId, job.input, spec) as JobResult<J>;
    case 'upStack':
      return upStack(store, job.stackId, job.input, spec) as JobResult<J>;
    case 'createService':
      return createService(store, job.stackId, job.input) as JobResult<J>;
    case 'updateService':
      return updateService(store, job.serviceId, job.patch) as JobResult<J>;
    case 'removeStack':
      removeStack(store, job.stackId);
      return null as JobResult<J>;
    case 'exportStack':
      return exportStack(store, job.stackId) as JobResult<J>;
  }
  throw new Error('unknown job');
}

/** Jobs larger than this (see `jobSize`) run in the worker, smaller ones inline. */
export const OFFLOAD_THRESHOLD = 300;

/**
 * How much work a job is, in containers to create (compose text counts 1 per 64 bytes: parsing is
 * the cost there). A compose file whose text alone is not over OFFLOAD_THRESHOLD is parsed here to
 * count its containers, and the spec is returned for `execute` (parsed once); its errors are then
 * thrown here, as they would be by the job.
 */
export function jobSize(store: Store, job: Job): { size: number; spec?: StackSpec } {
  const hosts = (envId: string) => store.list('host', { env_id: envId }).length;
  switch (job.op) {
    case 'createStack':
    case 'addToStack':
    case 'upStack': {
      const text = (job.input.dockerCompose ?? '').length + (job.input.rancherCompose ?? '').length;
      if (text / 64 > OFFLOAD_THRESHOLD) return { size: text / 64 };
      const spec = stackSpecOf(job.input);
      if (spec.services.length === 0) return { size: text / 64, spec };
      const envId = job.op === 'createStack' ? job.input.environmentId : store.mustGet('stack', job.stackId).environmentId;
      return { size: text / 64 + containersOf(spec.services, hosts(envId)), spec };
    }
    case 'createService':
      return { size: job.input.scale * (1 + (job.input.secondaryLaunchConfigs?.length ?? 0)) };
    case 'removeStack':
    case 'exportStack': {
      const count = (sql: string) => (store.statement(`offload:${sql}`, () => sql).get(job.stackId) as { n: number }).n;
      return {
        size:
          count('SELECT COUNT(*) AS n FROM services WHERE stack_id = ?') +
          count('SELECT COUNT(*) AS n FROM containers WHERE service_id IN (SELECT id FROM services WHERE stack_id = ?)'),
      };
    }
    case 'updateService': {
      if (job.patch.scale === undefined) return { size: 0 };
      const s = store.get('service', job.serviceId);
      return { size: job.patch.scale * (1 + (s?.secondaryLaunchConfigs.length ?? 0)) };
    }
  }
  return { size: 0 };
}

export function toWireError(err: unknown): WireError {
  const e = err instanceof ZodError ? zodToError(err) : err;
  if (e instanceof DroverError) {
    return { kind: 'drover', json: e.toJSON(), status: e.status, code: e.code, message: e.message, ...(e.fieldName !== undefined ? { fieldName: e.fieldName } : {}) };
  }
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  const stack = e instanceof Error ? e.stack : undefined;
  if (typeof code === 'string' && code.startsWith('SQLITE_')) return { kind: 'sqlite', code, message, ...(stack ? { stack } : {}) };
  return { kind: 'other', message, ...(stack ? { stack } : {}) };
}
