/**
 * The domain's three ways to refuse a command. Each leaves the log untouched; adapters map
 * them to their own vocabulary (GraphQL result unions, CLI exit codes).
 */
export class DomainError extends Error {}

/** Bad input; `field` is the path of the offending input, e.g. `input.tags.0.key`. */
export class InvalidInputError extends DomainError {
  override readonly name = 'InvalidInputError';
  constructor(
    readonly field: string | null,
    message: string,
  ) {
    super(message);
  }
}

export class RunNotFoundError extends DomainError {
  override readonly name = 'RunNotFoundError';
  constructor(readonly runId: string) {
    super(`run ${runId} does not exist`);
  }
}

/** The command is not allowed in the run's current state. */
export class TransitionNotAllowedError extends DomainError {
  override readonly name = 'TransitionNotAllowedError';
}
