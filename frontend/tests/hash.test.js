import { webcrypto } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createIncrementalSha256, sha256Hex, sha256OfChunks } from '../src/upload/hash.js'
import { planChunks } from '../src/upload/protocol.js'

async function oneShotSha256(bytes) {
  const digest = await webcrypto.subtle.digest('SHA-256', bytes)
  return Buffer.from(digest).toString('hex')
}

function pseudoRandomBytes(length, seed = 1) {
  const bytes = new Uint8Array(length)
  let state = seed
  for (let i = 0; i < length; i += 1) {
    state = (state * 1103515245 + 12345) >>> 0
    bytes[i] = state >>> 24
  }
  return bytes
}

describe('sha256Hex', () => {
  it('matches the FIPS 180-2 vector for "abc"', async () => {
    const digest = await sha256Hex(new TextEncoder().encode('abc'))
    expect(digest).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it('hashes empty input', async () => {
    expect(await sha256Hex(new Uint8Array(0))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })
})

describe('chunked sha256', () => {
  const bytes = pseudoRandomBytes(1_000_003)

  it.each([1, 7, 4096, 65_536, 999_999, 2_000_000])('matches one-shot digest for %i-byte chunks', async (chunkSize) => {
    const chunks = planChunks(bytes.length, chunkSize).map((chunk) => bytes.subarray(chunk.offset, chunk.end))
    expect(await sha256OfChunks(chunks)).toBe(await oneShotSha256(bytes))
  })

  it('matches for uneven splits', async () => {
    const splits = [0, 3, 3, 100, 65_537, 500_000, bytes.length]
    const chunks = splits.slice(1).map((end, i) => bytes.subarray(splits[i], end))
    expect(await sha256OfChunks(chunks)).toBe(await oneShotSha256(bytes))
  })

  it('counts hashed bytes', async () => {
    const hasher = await createIncrementalSha256()
    hasher.update(bytes.subarray(0, 10))
    hasher.update(bytes.subarray(10, 25))
    expect(hasher.hashedBytes).toBe(25)
    expect(hasher.digest()).toBe(await oneShotSha256(bytes.subarray(0, 25)))
  })

  it('keeps parallel hashers apart', async () => {
    const first = await createIncrementalSha256()
    const second = await createIncrementalSha256()
    first.update(bytes.subarray(0, 1000))
    second.update(bytes.subarray(1000, 3000))
    first.update(bytes.subarray(1000, 2000))
    expect(first.digest()).toBe(await oneShotSha256(bytes.subarray(0, 2000)))
    expect(second.digest()).toBe(await oneShotSha256(bytes.subarray(1000, 3000)))
  })
})
