/**
 * Uploads one File through the resumable chunked API: resume or create the upload,
 * send each chunk with its SHA-256, retry transient failures, then complete it with the
 * whole-file SHA-256. Only one chunk of the file is in memory at a time.
 */

import { sleep as defaultSleep } from '../lib/backoff.js'
import { ApiError } from './api.js'
import { createIncrementalSha256, sha256Hex } from './hash.js'
import { PREFIX_HASH_SLICE, RESUMABLE_STATUS, RETRY_DELAYS_MS, chunkAt, isRetryableStatus, planChunks, resumeKey } from './protocol.js'

/** Number of consecutive chunk responses that do not move the offset forward before the upload fails. */
const MAX_STALLED_CHUNKS = 5

/**
 * An upload that stopped. `state` is "failed" for an error that sending again cannot fix,
 * or "paused" when retries ran out and dropping the file again resumes it.
 */
export class UploadError extends Error {
  constructor(state, message, { status = null, cause } = {}) {
    super(message, { cause })
    this.name = 'UploadError'
    this.state = state
    this.status = status
  }
}

/** Wraps localStorage so that a blocked or full storage only disables resuming. */
export function safeStorage(storage) {
  return {
    get(key) {
      try {
        return storage?.getItem(key) ?? null
      } catch {
        return null
      }
    },
    set(key, value) {
      try {
        storage?.setItem(key, value)
      } catch {
        // Storage is full or blocked (private browsing), so this upload cannot be resumed.
      }
    },
    remove(key) {
      try {
        storage?.removeItem(key)
      } catch {
        // Nothing to clean up when storage is blocked.
      }
    },
  }
}

function isAbort(error, signal) {
  return error?.name === 'AbortError' || (signal?.aborted && error === signal.reason)
}

function checkServerOffset(value, size, fileName) {
  if (!Number.isSafeInteger(value) || value < 0 || value > size) {
    throw new UploadError('failed', `The server returned an invalid offset ${value} for "${fileName}" (${size} bytes). Start the upload again.`)
  }
  return value
}

async function readSlice(file, start, end) {
  try {
    return new Uint8Array(await file.slice(start, end).arrayBuffer())
  } catch (error) {
    throw new UploadError('failed', `Could not read "${file.name}" from disk (${error?.message || error}). Select the file again.`, { cause: error })
  }
}

/**
 * Uploads `file` into dataset `datasetUuid` and returns the server's file record.
 *
 * Options: `api` from createUploadApi, `storage` (localStorage or a stand-in) that remembers
 * upload uuids for resuming, `signal` to cancel, and callbacks `onSession(uploadUuid)`,
 * `onPhase(phase, info)` with phase "starting", "verifying", "uploading", "retrying" or
 * "completing", and `onProgress({sent, size, bytesPerSecond})`. `sleep`, `now` and
 * `retryDelays` exist for tests.
 *
 * Throws UploadError, or the signal's AbortError when cancelled.
 */
export async function uploadFile(file, options) {
  const {
    api,
    datasetUuid,
    storage = null,
    signal,
    onSession = () => {},
    onPhase = () => {},
    onProgress = () => {},
    sleep = defaultSleep,
    now = () => performance.now(),
    retryDelays = RETRY_DELAYS_MS,
  } = options
  const store = safeStorage(storage)
  const key = resumeKey(datasetUuid, file)
  const size = file.size

  // Runs `send`, and runs it again after each delay while it fails with a network error,
  // a 5xx or a 429. When the tries run out the upload pauses with the last error.
  async function withRetries(send) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await send()
      } catch (error) {
        if (!(error instanceof ApiError) || !isRetryableStatus(error.status)) throw error
        if (attempt >= retryDelays.length) {
          throw new UploadError('paused', `Upload of "${file.name}" paused after ${attempt + 1} tries: ${error.detail} Drop the file again to resume.`, {
            status: error.status,
            cause: error,
          })
        }
        onPhase('retrying', { attempt: attempt + 1, delayMs: retryDelays[attempt], detail: error.detail })
        await sleep(retryDelays[attempt], signal)
      }
    }
  }

  // Turns an API error that retrying cannot fix into a failed upload. The remembered upload
  // is forgotten so the next drop starts over, except after 401/403, where signing in
  // again and dropping the file resumes it.
  function failPermanently(error) {
    if (error instanceof ApiError) {
      if (error.status !== 401 && error.status !== 403) store.remove(key)
      return new UploadError('failed', error.detail, { status: error.status, cause: error })
    }
    return error
  }

  async function openSession() {
    const storedUuid = store.get(key)
    if (storedUuid) {
      try {
        const existing = await withRetries(() => api.getUpload(storedUuid, signal))
        if (existing?.status === RESUMABLE_STATUS && existing.size === size) return existing
      } catch (error) {
        if (!(error instanceof ApiError)) throw error
        // A 404 or another 4xx means the upload expired, was aborted or belongs to someone else.
      }
      store.remove(key)
    }
    const created = await withRetries(() => api.createUpload({ dataset: datasetUuid, filename: file.name, size }, signal))
    store.set(key, created.uuid)
    return created
  }

  try {
    onPhase('starting', {})
    const session = await openSession()
    const uploadUuid = session.uuid
    onSession(uploadUuid)

    const chunkSize = session.chunk_size
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new UploadError('failed', `The server returned an invalid chunk size ${chunkSize} for "${file.name}". Start the upload again.`)
    }
    let offset = checkServerOffset(session.offset, size, file.name)
    const startOffset = offset
    const startTime = now()
    const reportProgress = () => {
      const seconds = (now() - startTime) / 1000
      const bytesPerSecond = seconds > 0 ? (offset - startOffset) / seconds : 0
      onProgress({ sent: offset, size, bytesPerSecond })
    }

    // The whole-file hash covers file[0, hasher.hashedBytes) at all times. Bytes that the
    // server already stored (a resumed upload, or a 409 that moved the offset forward) are
    // read back from the local file, because this upload never sent them.
    const hasher = await createIncrementalSha256()
    async function hashUpTo(position) {
      if (hasher.hashedBytes >= position) return
      onPhase('verifying', { from: hasher.hashedBytes, to: position })
      for (const slice of planChunks(position, PREFIX_HASH_SLICE, hasher.hashedBytes)) {
        signal?.throwIfAborted()
        hasher.update(await readSlice(file, slice.offset, slice.end))
      }
    }

    reportProgress()
    let stalled = 0
    while (offset < size) {
      signal?.throwIfAborted()
      await hashUpTo(offset)
      onPhase('uploading', { offset })
      const chunk = chunkAt(offset, size, chunkSize)
      const bytes = await readSlice(file, chunk.offset, chunk.end)
      if (chunk.end > hasher.hashedBytes) hasher.update(bytes.subarray(hasher.hashedBytes - chunk.offset))
      const chunkSha256 = await sha256Hex(bytes)

      let nextOffset
      try {
        const result = await withRetries(() => api.putChunk(uploadUuid, { offset, bytes, sha256: chunkSha256 }, signal))
        nextOffset = result?.offset
      } catch (error) {
        // 409 Conflict means the server's offset differs from ours. Continue from the server's.
        if (!(error instanceof ApiError) || error.status !== 409) throw error
        nextOffset = error.body?.offset
      }
      nextOffset = checkServerOffset(nextOffset, size, file.name)

      stalled = nextOffset > offset ? 0 : stalled + 1
      if (stalled >= MAX_STALLED_CHUNKS) {
        throw new UploadError('failed', `The server did not accept the chunk of "${file.name}" at byte ${offset} after ${stalled} tries. Start the upload again.`)
      }
      offset = nextOffset
      reportProgress()
    }

    await hashUpTo(size)
    signal?.throwIfAborted()
    onPhase('completing', {})
    // hash-wasm's digest() finalizes the hasher, so it runs once, outside the retries.
    const fileSha256 = hasher.digest()
    const dataFile = await withRetries(() => api.complete(uploadUuid, fileSha256, signal))
    store.remove(key)
    return dataFile
  } catch (error) {
    if (isAbort(error, signal)) throw error
    throw failPermanently(error)
  }
}
