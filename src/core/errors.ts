/**
 * The error hierarchy of dcd. Library code throws these; only the CLI catches them,
 * prints the message and sets the exit code. Every message names the file or key,
 * what was expected, what was found, and what to do.
 */
export class DcdError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A config file or CLI flag is wrong. */
export class ConfigError extends DcdError {
  override readonly exitCode = 2;
}

/** An input data set, image, manifest or download is wrong or unreadable. */
export class DataError extends DcdError {}

/** A checkpoint file is unreadable, or does not fit the architecture. */
export class WeightsError extends DcdError {}

/** An artifact written by dcd (Arrow file, stage manifest) is missing or inconsistent. */
export class ArtifactError extends DcdError {}

/** Formats an unknown thrown value for a one-line message. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
