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

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new ModelBug(message);
}
