/**
 * Test assertions. The one module that imports `node:assert/strict`, so a later switch to
 * `@std/assert` is a one-file change.
 */
import assert from "node:assert/strict";

export const assertEquals: <T>(actual: unknown, expected: T, message?: string) => void =
  assert.deepStrictEqual;
export const assertNotEquals: (actual: unknown, expected: unknown, message?: string) => void =
  assert.notDeepStrictEqual;
export const assertStrictEquals: <T>(actual: unknown, expected: T, message?: string) => void =
  assert.strictEqual;

export function assert_(condition: unknown, message?: string): asserts condition {
  assert.ok(condition, message);
}
export { assert_ as assert };

export function assertMatch(actual: string, expected: RegExp, message?: string): void {
  assert.match(actual, expected, message);
}

export function assertStringIncludes(actual: string, expected: string, message?: string): void {
  if (!actual.includes(expected)) {
    throw new assert.AssertionError({
      message: message ??
        `Expected ${JSON.stringify(actual)} to include ${JSON.stringify(expected)}`,
      actual,
      expected,
      operator: "includes",
    });
  }
}

/** Asserts that `fn` rejects with an error of `ErrorClass` whose message includes `includes`. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  ErrorClass?: new (...args: never) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (error: unknown) {
    if (ErrorClass && !(error instanceof ErrorClass)) {
      throw new assert.AssertionError({
        message: `Expected ${ErrorClass.name}, got ${
          error instanceof Error ? error.name : typeof error
        }: ${String(error)}`,
      });
    }
    if (includes !== undefined) assertStringIncludes((error as Error).message, includes);
    return error as E;
  }
  throw new assert.AssertionError({ message: "Expected the function to reject" });
}

/** Asserts that `fn` throws synchronously; returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  ErrorClass?: new (...args: never) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (error: unknown) {
    if (ErrorClass && !(error instanceof ErrorClass)) {
      throw new assert.AssertionError({
        message: `Expected ${ErrorClass.name}, got ${String(error)}`,
      });
    }
    if (includes !== undefined) assertStringIncludes((error as Error).message, includes);
    return error as E;
  }
  throw new assert.AssertionError({ message: "Expected the function to throw" });
}
