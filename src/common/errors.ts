// Typed errors with messages a user can act on. The API maps them to the original's error resource:
// { "type": "error", "status": 422, "code": "…", "fieldName": "…", "message": "…" }.

export class DroverError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fieldName: string | undefined;

  constructor(status: number, code: string, message: string, fieldName?: string) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.fieldName = fieldName;
  }

  toJSON(): Record<string, unknown> {
    return {
      type: 'error',
      status: this.status,
      code: this.code,
      ...(this.fieldName !== undefined ? { fieldName: this.fieldName } : {}),
      message: this.message,
    };
  }
}

/** Bad input: 422, with the field it is about when there is one. */
export class ValidationError extends DroverError {
  constructor(code: string, message: string, fieldName?: string) {
    super(422, code, message, fieldName);
  }
}

export class NotFoundError extends DroverError {
  constructor(what: string, id: string) {
    super(404, 'NotFound', `${what} ${JSON.stringify(id)} not found`);
  }
}

export class ConflictError extends DroverError {
  constructor(code: string, message: string, fieldName?: string) {
    super(409, code, message, fieldName);
  }
}

export class UnauthorizedError extends DroverError {
  constructor(message = 'Unauthorized: send an API key (access key and secret) with HTTP basic auth') {
    super(401, 'Unauthorized', message);
  }
}

export class ForbiddenError extends DroverError {
  constructor(message: string) {
    super(403, 'Forbidden', message);
  }
}

/** A compose input problem, located by file, service and field (all that are known). */
export class ComposeError extends ValidationError {
  readonly file: string;
  readonly service: string | undefined;
  readonly field: string | undefined;

  constructor(file: string, service: string | undefined, field: string | undefined, problem: string, code = 'InvalidCompose') {
    const where = [file, service ? `service "${service}"` : undefined, field ? `field "${field}"` : undefined]
      .filter(Boolean)
      .join(', ');
    super(code, `${where}: ${problem}`, field);
    this.file = file;
    this.service = service;
    this.field = field;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), file: this.file, service: this.service, field: this.field };
  }
}

/** No host satisfies a service's scheduling constraints. */
export class SchedulingError extends ValidationError {
  constructor(message: string, fieldName?: string) {
    super('NoHostAvailable', message, fieldName);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A process cannot start (address in use, data directory locked or unusable): the CLI prints the
 * message as one line, without a stack, and exits 1.
 */
export class StartupError extends DroverError {
  constructor(code: string, message: string) {
    super(503, code, message);
  }
}
