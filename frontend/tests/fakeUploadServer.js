/**
 * In-memory stand-in for the /api/uploads/ endpoints, exposed as a fetch function.
 * It checks the same things the Django API does: CSRF header, Upload-Offset, the chunk's
 * SHA-256 and the whole-file SHA-256.
 */

import { webcrypto } from 'node:crypto'

async function sha256Hex(bytes) {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes)).toString('hex')
}

function jsonResponse(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

export function createFakeUploadServer({ chunkSize = 4, csrfToken = 'token-1' } = {}) {
  const uploads = new Map()
  const requests = []
  // Each entry is a function(request) that returns a Response, or undefined to handle normally.
  const interceptors = []
  let nextId = 1

  async function handle(url, init) {
    const method = init.method || 'GET'
    const headers = init.headers || {}
    requests.push({ method, url, headers })

    for (const intercept of interceptors) {
      const response = await intercept({ method, url, headers, init })
      if (response) return response
    }

    if (method !== 'GET' && headers['X-CSRFToken'] !== csrfToken) {
      return jsonResponse(403, { detail: 'CSRF Failed: CSRF token missing.' })
    }
    if (init.credentials !== 'same-origin') return jsonResponse(400, { detail: 'credentials not same-origin' })

    if (url === '/api/uploads/' && method === 'POST') {
      const { dataset, filename, size } = JSON.parse(init.body)
      if (!dataset || !filename || !Number.isInteger(size)) return jsonResponse(400, { detail: 'bad create body' })
      const uuid = `upload-${nextId++}`
      const upload = { uuid, dataset, filename, size, chunk_size: chunkSize, offset: 0, status: 'active', bytes: new Uint8Array(size) }
      uploads.set(uuid, upload)
      return jsonResponse(201, publicView(upload))
    }

    const match = url.match(/^\/api\/uploads\/([^/]+)\/(chunk\/|complete\/)?$/)
    if (!match) return jsonResponse(404, { detail: 'Not found.' })
    const upload = uploads.get(match[1])
    if (!upload) return jsonResponse(404, { detail: 'Not found.' })
    const action = match[2] || ''

    if (action === '' && method === 'GET') return jsonResponse(200, publicView(upload))
    if (action === '' && method === 'DELETE') {
      upload.status = 'aborted'
      return new Response(null, { status: 204 })
    }
    if (upload.status !== 'active') return jsonResponse(400, { detail: `Upload of "${upload.filename}" is ${upload.status}.` })

    if (action === 'chunk/' && method === 'PUT') {
      const bytes = init.body
      const offset = Number(headers['Upload-Offset'])
      if (headers['Content-Type'] !== 'application/octet-stream') return jsonResponse(400, { detail: 'bad content type' })
      if (offset !== upload.offset) {
        return jsonResponse(409, { detail: `Expected offset ${upload.offset}.`, offset: upload.offset })
      }
      if (bytes.byteLength > upload.chunk_size) return jsonResponse(413, { detail: 'Chunk too large.' })
      if (offset + bytes.byteLength > upload.size) return jsonResponse(400, { detail: 'Chunk past the end.' })
      if ((await sha256Hex(bytes)) !== headers['Chunk-Sha256']) {
        return jsonResponse(400, { detail: `Chunk at ${offset} of "${upload.filename}" does not match its Chunk-Sha256.` })
      }
      upload.bytes.set(bytes, offset)
      upload.offset += bytes.byteLength
      return jsonResponse(200, { offset: upload.offset, size: upload.size })
    }

    if (action === 'complete/' && method === 'POST') {
      const { sha256 } = JSON.parse(init.body)
      if (upload.offset !== upload.size) return jsonResponse(400, { detail: 'Upload is incomplete.' })
      const actual = await sha256Hex(upload.bytes)
      if (sha256 !== actual) {
        upload.status = 'failed'
        return jsonResponse(400, { detail: `Checksum mismatch for "${upload.filename}": the file changed during upload. Upload it again.` })
      }
      upload.status = 'complete'
      return jsonResponse(201, { uuid: `file-${upload.uuid}`, original_name: upload.filename, size: upload.size, sha256: actual, kind: 'other', metadata: {} })
    }

    return jsonResponse(405, { detail: `Method ${method} not allowed.` })
  }

  function publicView(upload) {
    const { bytes, ...rest } = upload
    return rest
  }

  return {
    uploads,
    requests,
    interceptors,
    // Like a browser's fetch, it rejects with the signal's reason once the signal aborts.
    fetch: async (url, init = {}) => {
      init.signal?.throwIfAborted()
      const response = await handle(url, init)
      init.signal?.throwIfAborted()
      return response
    },
  }
}

/** Creates a Map-backed stand-in for localStorage. */
export function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial))
  return {
    data,
    getItem: (key) => (data.has(key) ? data.get(key) : null),
    setItem: (key, value) => data.set(key, String(value)),
    removeItem: (key) => data.delete(key),
  }
}
