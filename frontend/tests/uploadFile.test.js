import { webcrypto } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ApiError, createUploadApi } from '../src/upload/api.js'
import { resumeKey } from '../src/upload/protocol.js'
import { UploadError, uploadFile } from '../src/upload/uploadFile.js'
import { createFakeUploadServer, memoryStorage } from './fakeUploadServer.js'

const DATASET = 'dataset-1'

async function sha256Hex(bytes) {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes)).toString('hex')
}

function makeFile(text, name = 'cells.tif', lastModified = 1_700_000_000_000) {
  return new File([new TextEncoder().encode(text)], name, { lastModified })
}

function setup({ chunkSize = 4, storage = memoryStorage(), csrf = 'token-1' } = {}) {
  const server = createFakeUploadServer({ chunkSize })
  const csrfState = { token: csrf }
  const api = createUploadApi({ fetchImpl: server.fetch, getCsrfToken: () => csrfState.token })
  const phases = []
  const progress = []
  const sleeps = []
  const options = {
    api,
    datasetUuid: DATASET,
    storage,
    onPhase: (phase, info) => phases.push({ phase, ...info }),
    onProgress: (report) => progress.push(report),
    sleep: async (ms) => {
      sleeps.push(ms)
    },
    retryDelays: [10, 20, 40],
  }
  return { server, api, storage, phases, progress, sleeps, options, csrfState }
}

function chunkRequests(server) {
  return server.requests.filter((request) => request.method === 'PUT')
}

describe('uploadFile fresh upload', () => {
  it('sends every chunk and completes', async () => {
    const { server, storage, progress, options } = setup()
    const file = makeFile('hello, chunked world')

    const result = await uploadFile(file, options)

    const upload = server.uploads.get('upload-1')
    expect(upload.status).toBe('complete')
    expect(new TextDecoder().decode(upload.bytes)).toBe('hello, chunked world')
    expect(result.sha256).toBe(await sha256Hex(await file.arrayBuffer()))
    expect(result.original_name).toBe('cells.tif')
    expect(chunkRequests(server).map((request) => request.headers['Upload-Offset'])).toEqual(['0', '4', '8', '12', '16'])
    expect(progress.at(-1)).toMatchObject({ sent: 20, size: 20 })
    expect(storage.data.size).toBe(0)
  })

  it('sends CSRF and chunk headers', async () => {
    const { server, options } = setup()
    await uploadFile(makeFile('abcdef'), options)

    const [create, firstChunk] = server.requests
    expect(create.headers['X-CSRFToken']).toBe('token-1')
    expect(firstChunk.headers['Content-Type']).toBe('application/octet-stream')
    expect(firstChunk.headers['Chunk-Sha256']).toBe(await sha256Hex(new TextEncoder().encode('abcd')))
  })

  it('remembers the upload while it runs', async () => {
    const { server, storage, options } = setup()
    const file = makeFile('abcdefgh')
    const seen = []
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') seen.push(storage.getItem(resumeKey(DATASET, file)))
    })

    await uploadFile(file, options)

    expect(seen).toEqual(['upload-1', 'upload-1'])
  })

  it('uploads an empty file', async () => {
    const { server, options } = setup()
    const result = await uploadFile(makeFile(''), options)

    expect(chunkRequests(server)).toHaveLength(0)
    expect(result.sha256).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('reports the session uuid', async () => {
    const { options } = setup()
    const sessions = []
    await uploadFile(makeFile('abc'), { ...options, onSession: (uuid) => sessions.push(uuid) })
    expect(sessions).toEqual(['upload-1'])
  })
})

describe('uploadFile resume', () => {
  it('resumes from the committed offset', async () => {
    const { server, storage, phases, options } = setup()
    const file = makeFile('0123456789abcdef')
    // A first attempt stops after two chunks: the network drops and retries run out.
    let puts = 0
    server.interceptors.push(({ method }) => {
      if (method === 'PUT' && ++puts > 2) throw new TypeError('Failed to fetch')
    })
    const paused = await uploadFile(file, options).catch((error) => error)
    expect(paused).toBeInstanceOf(UploadError)
    expect(paused.state).toBe('paused')
    expect(paused.message).toMatch(/Drop the file again to resume/)
    expect(storage.getItem(resumeKey(DATASET, file))).toBe('upload-1')
    expect(server.uploads.get('upload-1').offset).toBe(8)

    server.interceptors.length = 0
    server.requests.length = 0
    const result = await uploadFile(file, options)

    expect(server.requests[0]).toMatchObject({ method: 'GET', url: '/api/uploads/upload-1/' })
    expect(server.uploads.size).toBe(1)
    expect(chunkRequests(server).map((request) => request.headers['Upload-Offset'])).toEqual(['8', '12'])
    expect(phases.some((entry) => entry.phase === 'verifying' && entry.to === 8)).toBe(true)
    expect(result.sha256).toBe(await sha256Hex(await file.arrayBuffer()))
    expect(storage.getItem(resumeKey(DATASET, file))).toBeNull()
  })

  it('completes an upload whose bytes all arrived', async () => {
    const { server, storage, options } = setup()
    const file = makeFile('abcdefgh')
    server.interceptors.push(({ method }) => {
      if (method === 'POST' && server.uploads.size === 1 && server.uploads.get('upload-1').offset === 8) {
        throw new TypeError('Failed to fetch')
      }
    })
    await expect(uploadFile(file, options)).rejects.toMatchObject({ state: 'paused' })

    server.interceptors.length = 0
    server.requests.length = 0
    const result = await uploadFile(file, options)

    expect(chunkRequests(server)).toHaveLength(0)
    expect(result.sha256).toBe(await sha256Hex(await file.arrayBuffer()))
    expect(storage.data.size).toBe(0)
  })

  it('starts over when the stored upload is gone', async () => {
    const file = makeFile('abcdef')
    const storage = memoryStorage({ [resumeKey(DATASET, file)]: 'upload-missing' })
    const { server, options } = setup({ storage })

    const result = await uploadFile(file, options)

    expect(server.requests[0]).toMatchObject({ method: 'GET', url: '/api/uploads/upload-missing/' })
    expect(server.requests[1]).toMatchObject({ method: 'POST', url: '/api/uploads/' })
    expect(result.original_name).toBe('cells.tif')
  })

  it('starts over when the stored upload was aborted', async () => {
    const file = makeFile('abcdef')
    const { server, storage, options } = setup()
    await server.fetch('/api/uploads/', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-CSRFToken': 'token-1' },
      body: JSON.stringify({ dataset: DATASET, filename: file.name, size: file.size }),
    })
    server.uploads.get('upload-1').status = 'aborted'
    storage.setItem(resumeKey(DATASET, file), 'upload-1')

    await uploadFile(file, options)

    expect(server.uploads.get('upload-2').status).toBe('complete')
  })

  it('does not resume a different file', async () => {
    const { server, storage, options } = setup()
    await uploadFile(makeFile('first version', 'a.txt', 1), options).catch(() => {})
    storage.setItem(resumeKey(DATASET, makeFile('first version', 'a.txt', 1)), 'upload-1')
    server.requests.length = 0

    await uploadFile(makeFile('second version', 'a.txt', 2), options)

    expect(server.requests[0]).toMatchObject({ method: 'POST', url: '/api/uploads/' })
  })
})

describe('uploadFile conflicts', () => {
  it('follows a 409 offset forward', async () => {
    const { server, options } = setup()
    const file = makeFile('0123456789')
    // The server committed the first chunk but its response was lost.
    let lost = false
    server.interceptors.push(async ({ method, url, init }) => {
      if (method === 'PUT' && !lost) {
        lost = true
        await server.fetch(url, init)
        throw new TypeError('Failed to fetch')
      }
    })

    const result = await uploadFile(file, options)

    const offsets = chunkRequests(server).map((request) => request.headers['Upload-Offset'])
    expect(offsets).toEqual(['0', '0', '0', '4', '8'])
    expect(result.sha256).toBe(await sha256Hex(await file.arrayBuffer()))
  })

  it('follows a 409 offset backward', async () => {
    const { server, options } = setup()
    const file = makeFile('0123456789')
    // After the second chunk the server loses it (a crash before saving the offset).
    let rolledBack = false
    server.interceptors.push(({ method, headers }) => {
      const upload = server.uploads.get('upload-1')
      if (method === 'PUT' && headers['Upload-Offset'] === '8' && !rolledBack) {
        rolledBack = true
        upload.offset = 4
      }
    })

    const result = await uploadFile(file, options)

    const offsets = chunkRequests(server).map((request) => request.headers['Upload-Offset'])
    expect(offsets).toEqual(['0', '4', '8', '4', '8'])
    expect(result.sha256).toBe(await sha256Hex(await file.arrayBuffer()))
  })

  it('fails on an invalid 409 offset', async () => {
    const { server, options } = setup()
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') return new Response(JSON.stringify({ detail: 'conflict', offset: 99 }), { status: 409 })
    })

    const error = await uploadFile(makeFile('abcdef'), options).catch((caught) => caught)

    expect(error.state).toBe('failed')
    expect(error.message).toMatch(/invalid offset 99/)
  })

  it('fails when the offset never advances', async () => {
    const { server, options } = setup()
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') return new Response(JSON.stringify({ detail: 'conflict', offset: 0 }), { status: 409 })
    })

    const error = await uploadFile(makeFile('abcdef'), options).catch((caught) => caught)

    expect(error.state).toBe('failed')
    expect(error.message).toMatch(/did not accept the chunk of "cells.tif" at byte 0/)
    expect(chunkRequests(server)).toHaveLength(5)
  })
})

describe('uploadFile retries', () => {
  it('retries 5xx with backoff', async () => {
    const { server, phases, sleeps, options } = setup()
    let failures = 2
    server.interceptors.push(({ method }) => {
      if (method === 'PUT' && failures > 0) {
        failures -= 1
        return new Response('<h1>Bad gateway</h1>', { status: 502, statusText: 'Bad Gateway' })
      }
    })

    await uploadFile(makeFile('abcdef'), options)

    expect(sleeps).toEqual([10, 20])
    expect(phases.filter((entry) => entry.phase === 'retrying').map((entry) => entry.attempt)).toEqual([1, 2])
  })

  it('pauses after the last retry', async () => {
    const { server, storage, sleeps, options } = setup()
    const file = makeFile('abcdef')
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') return new Response('', { status: 503, statusText: 'Service Unavailable' })
    })

    const error = await uploadFile(file, options).catch((caught) => caught)

    expect(error.state).toBe('paused')
    expect(error.message).toMatch(/after 4 tries/)
    expect(error.message).toMatch(/HTTP 503/)
    expect(sleeps).toEqual([10, 20, 40])
    expect(storage.getItem(resumeKey(DATASET, file))).toBe('upload-1')
  })

  it('retries a failed create', async () => {
    const { server, options } = setup()
    let failed = false
    server.interceptors.push(({ method, url }) => {
      if (method === 'POST' && url === '/api/uploads/' && !failed) {
        failed = true
        throw new TypeError('NetworkError when attempting to fetch resource.')
      }
    })

    const result = await uploadFile(makeFile('abc'), options)

    expect(result.original_name).toBe('cells.tif')
  })
})

describe('uploadFile permanent errors', () => {
  it('shows the server detail on 400', async () => {
    const { server, storage, options } = setup()
    const file = makeFile('abcdef')
    const detail = '"cells.tif" is not a supported file type. Convert it to TIFF, PNG or MRC.'
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') return new Response(JSON.stringify({ detail }), { status: 400 })
    })

    const error = await uploadFile(file, options).catch((caught) => caught)

    expect(error).toBeInstanceOf(UploadError)
    expect(error.state).toBe('failed')
    expect(error.status).toBe(400)
    expect(error.message).toBe(detail)
    expect(storage.getItem(resumeKey(DATASET, file))).toBeNull()
  })

  it('fails on 413 without retrying', async () => {
    const { server, sleeps, options } = setup({ chunkSize: 4 })
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') return new Response(JSON.stringify({ detail: 'Chunk too large.' }), { status: 413 })
    })

    const error = await uploadFile(makeFile('abcdef'), options).catch((caught) => caught)

    expect(error.state).toBe('failed')
    expect(error.message).toBe('Chunk too large.')
    expect(sleeps).toEqual([])
  })

  it('fails on a checksum mismatch', async () => {
    const { server, options } = setup()
    server.interceptors.push(({ method, url, init }) => {
      if (method === 'POST' && url.endsWith('/complete/')) {
        init.body = JSON.stringify({ sha256: '0'.repeat(64) })
      }
    })

    const error = await uploadFile(makeFile('abcdef'), options).catch((caught) => caught)

    expect(error.state).toBe('failed')
    expect(error.message).toMatch(/Checksum mismatch for "cells.tif"/)
  })

  it('keeps the resume key on 403', async () => {
    const { server, storage, options, csrfState } = setup()
    const file = makeFile('abcdefgh')
    // The session expires after the first chunk, so later requests carry a stale token.
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') csrfState.token = 'stale'
    })

    const error = await uploadFile(file, options).catch((caught) => caught)

    expect(error.state).toBe('failed')
    expect(error.status).toBe(403)
    expect(error.message).toMatch(/CSRF/)
    expect(storage.getItem(resumeKey(DATASET, file))).toBe('upload-1')
    expect(server.uploads.get('upload-1').offset).toBe(4)
  })

  it('fails when the file cannot be read', async () => {
    const { options } = setup()
    const file = makeFile('abcdef')
    file.slice = () => ({
      arrayBuffer: () => Promise.reject(new DOMException('The file could not be read.', 'NotReadableError')),
    })

    const error = await uploadFile(file, options).catch((caught) => caught)

    expect(error.state).toBe('failed')
    expect(error.message).toMatch(/Could not read "cells.tif" from disk/)
  })
})

describe('uploadFile cancel', () => {
  it('stops with an AbortError', async () => {
    const { server, options } = setup()
    const controller = new AbortController()
    server.interceptors.push(({ method }) => {
      if (method === 'PUT') controller.abort()
    })

    const error = await uploadFile(makeFile('abcdefghij'), { ...options, signal: controller.signal }).catch((caught) => caught)

    expect(error.name).toBe('AbortError')
    expect(chunkRequests(server).length).toBeLessThanOrEqual(1)
  })
})

describe('createUploadApi', () => {
  it('turns network failures into status 0', async () => {
    const api = createUploadApi({
      fetchImpl: () => Promise.reject(new TypeError('Failed to fetch')),
    })

    const error = await api.getUpload('x').catch((caught) => caught)

    expect(error).toBeInstanceOf(ApiError)
    expect(error.status).toBe(0)
    expect(error.detail).toMatch(/Failed to fetch/)
  })

  it('describes errors without a detail', async () => {
    const api = createUploadApi({
      fetchImpl: async () => new Response('oops', { status: 500, statusText: 'Internal Server Error' }),
    })

    const error = await api.complete('u-1', 'abc').catch((caught) => caught)

    expect(error.status).toBe(500)
    expect(error.detail).toBe('POST /api/uploads/u-1/complete/ failed with HTTP 500 Internal Server Error')
  })

  it('sends no CSRF header on GET', async () => {
    const seen = []
    const api = createUploadApi({
      fetchImpl: async (url, init) => {
        seen.push(init)
        return new Response('{}', { status: 200 })
      },
      getCsrfToken: () => 'token-1',
    })

    await api.getUpload('u-1')
    await api.abort('u-1')

    expect(seen[0].headers['X-CSRFToken']).toBeUndefined()
    expect(seen[1].headers['X-CSRFToken']).toBe('token-1')
    expect(seen[1].method).toBe('DELETE')
    expect(seen[0].credentials).toBe('same-origin')
  })
})
