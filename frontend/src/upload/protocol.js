/**
 * Pure parts of the resumable chunked upload protocol: chunk planning, resume keys,
 * retry decisions and display formatting. Nothing here touches the network or the DOM.
 */

import { backoffSchedule } from '../lib/backoff.js'

/** Delays in milliseconds between tries of one request on a network error or a 5xx/429. */
export const RETRY_DELAYS_MS = backoffSchedule(5, { baseMs: 500, maxMs: 8_000 })

/** Upload status (UploadSession.Status.ACTIVE on the server) that can still receive chunks. */
export const RESUMABLE_STATUS = 'active'

/** Slice length for hashing an already-sent prefix when resuming: 8 MiB. */
export const PREFIX_HASH_SLICE = 8 * 1024 * 1024

function checkByteCount(value, name) {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer number of bytes, got ${value}`)
  }
}

/**
 * Returns the chunk that starts at `offset`: `{offset, end, length}` with `end` exclusive,
 * `length` at most `chunkSize`, and the last chunk cut at `size`.
 */
export function chunkAt(offset, size, chunkSize) {
  checkByteCount(offset, 'offset')
  checkByteCount(size, 'size')
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
    throw new RangeError(`chunk size must be a positive integer, got ${chunkSize}`)
  }
  if (offset > size) {
    throw new RangeError(`offset ${offset} is past the end of a ${size}-byte file`)
  }
  const end = Math.min(offset + chunkSize, size)
  return { offset, end, length: end - offset }
}

/**
 * Returns every chunk `{offset, end, length}` needed to send bytes `fromOffset` to `size`.
 * A resumed upload passes the server's committed offset as `fromOffset`.
 */
export function planChunks(size, chunkSize, fromOffset = 0) {
  const chunks = []
  let offset = fromOffset
  chunkAt(offset, size, chunkSize) // validates the arguments, also for an empty plan
  while (offset < size) {
    const chunk = chunkAt(offset, size, chunkSize)
    chunks.push(chunk)
    offset = chunk.end
  }
  return chunks
}

/**
 * Returns the localStorage key that remembers an upload of `file` into a dataset.
 * Size and lastModified are part of the key, so an edited file with the same name
 * starts a new upload instead of resuming the old bytes.
 */
export function resumeKey(datasetUuid, file) {
  if (!datasetUuid) throw new TypeError('resumeKey needs a dataset uuid')
  const name = encodeURIComponent(file.name)
  return `biovlm:upload:${datasetUuid}:${name}:${file.size}:${file.lastModified}`
}

/**
 * Returns true when a failed request may succeed if sent again unchanged:
 * a network error (status 0), 408 Request Timeout, 429 Too Many Requests or any 5xx.
 */
export function isRetryableStatus(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500
}

/** Formats a byte count in binary units, for example "1.5 MiB". */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

/** Formats a transfer rate in decimal megabytes per second, for example "12.3 MB/s". */
export function formatRate(bytesPerSecond) {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '–'
  return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`
}

/** Returns the whole percentage (0–100) of `sent` out of `size`. An empty file counts as 100. */
export function percentOf(sent, size) {
  if (size <= 0) return 100
  return Math.max(0, Math.min(100, Math.floor((sent / size) * 100)))
}
