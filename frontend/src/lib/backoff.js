/**
 * Exponential backoff shared by the job websocket and the chunk uploader.
 */

/**
 * Returns the delay in milliseconds before retry number `attempt` (0 for the first retry):
 * `baseMs * 2 ** attempt`, capped at `maxMs`.
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 10_000 } = {}) {
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`attempt must be a non-negative integer, got ${attempt}`)
  }
  // 2 ** 31 already exceeds any sensible cap, so larger exponents cannot overflow the result.
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 31))
}

/** Returns the delays of `count` successive retries, for example [500, 1000, 2000, 4000]. */
export function backoffSchedule(count, options) {
  return Array.from({ length: count }, (_, attempt) => backoffDelay(attempt, options))
}

/**
 * Resolves after `ms` milliseconds, or rejects with the signal's reason when `signal` aborts.
 */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    function onAbort() {
      clearTimeout(timer)
      reject(signal.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
