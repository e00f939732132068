/**
 * DaxError: the one error type daxstore throws for anything that can happen to a user
 * (bad input, a full store, a poisoned block, a locked file, a failed system call).
 * Broken invariants are not DaxErrors: they are assertion failures (see assert.ts).
 *
 * `code` is stable and part of the public API; messages name the object and offset.
 */

export type DaxErrorCode =
  | 'EINVAL' // bad argument: wrong type, out of range, misaligned
  | 'ENOENT' // path or object does not exist
  | 'EEXIST' // path exists where it must not
  | 'EISDIR' // a directory where a file or device was expected
  | 'EACCES' // permission denied (read-only file, no access)
  | 'EBUSY' // held by someone else: the store's flock, a dirty entry on invalidate
  | 'ENOSPC' // no space: device full, tmpfs full at creation
  | 'EIO' // media error: poisoned block, SIGBUS on a mapping, injected I/O failure
  | 'EDEADLK' // a blocking wait on a lock this thread already holds
  | 'ECORRUPT' // checksum or structure mismatch in persistent data
  | 'EVERSION' // a persistent format newer than this code understands
  | 'ENOTSTORE' // a file that is not a daxstore
  | 'ECLOSED' // use after close
  | 'ERANGE' // offset or index beyond the object's or device's size
  | 'ENOTSUP' // operation or mapping mode not supported here
  | 'ESYS' // any other system-call failure (errno name in `errno`)
  | 'ECONFLICT'; // a transaction kept conflicting with other writers: given up, nothing written

export class DaxError extends Error {
  readonly code: DaxErrorCode;
  /** errno name from the system call that failed, when there was one ('ENOSPC', 'EAGAIN' …). */
  readonly errno: string | undefined;
  /** the system call that failed, when there was one. */
  readonly syscall: string | undefined;
  /** the path involved, when there was one. */
  readonly path: string | undefined;

  constructor(
    code: DaxErrorCode,
    message: string,
    details: { errno?: string; syscall?: string; path?: string; cause?: unknown } = {},
  ) {
    super(`${code}: ${message}`, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'DaxError';
    this.code = code;
    this.errno = details.errno;
    this.syscall = details.syscall;
    this.path = details.path;
  }
}

export function isDaxError(e: unknown, code?: DaxErrorCode): e is DaxError {
  return e instanceof DaxError && (code === undefined || e.code === code);
}
