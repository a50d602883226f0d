/**
 * SHA-256 with hash-wasm. Unlike crypto.subtle it works outside a secure context
 * (plain http on a lab network) and can hash a file incrementally, chunk by chunk.
 */

import { createSHA256, sha256 } from 'hash-wasm'

/** Returns the lowercase hex SHA-256 of one byte array. */
export function sha256Hex(bytes) {
  return sha256(bytes)
}

/**
 * Returns an incremental hasher over a sequence of byte ranges, `{update, digest, hashedBytes}`.
 * `update(bytes)` adds the next bytes and `digest()` returns the lowercase hex digest.
 */
export async function createIncrementalSha256() {
  const hasher = await createSHA256()
  hasher.init()
  let hashedBytes = 0
  return {
    update(bytes) {
      hasher.update(bytes)
      hashedBytes += bytes.byteLength
    },
    digest() {
      return hasher.digest('hex')
    },
    get hashedBytes() {
      return hashedBytes
    },
  }
}

/** Returns the hex SHA-256 of a sequence of byte arrays, hashed one after another. */
export async function sha256OfChunks(chunks) {
  const hasher = await createIncrementalSha256()
  for (const chunk of chunks) hasher.update(chunk)
  return hasher.digest()
}
