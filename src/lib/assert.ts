/**
 * WARN-like checks. A failed assertion is a bug in the model, never a user error: user errors
 * are SyscallError/SignalError. The message says which invariant broke.
 */
export class ModelBug extends Error {
  constructor(message: string) {
    super(`model invariant violated: ${message}`);
    this.name = 'ModelBug';
  }
}

/** `message` may be a function, so hot paths build the text only when the check fails. */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new ModelBug(typeof message === 'string' ? message : message());
}
