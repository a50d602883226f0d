/**
 * Client for the upload REST API under /api/uploads/. Every function returns parsed JSON
 * or throws an ApiError. An AbortError from the caller's signal passes through unchanged.
 */

/** An HTTP error response, or a network failure when `status` is 0. */
export class ApiError extends Error {
  constructor(status, detail, body = null) {
    super(detail)
    this.name = 'ApiError'
    this.status = status
    this.detail = detail
    this.body = body
  }
}

async function readJson(response) {
  const text = await response.text()
  if (!text) return null
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

/**
 * Creates the upload API client.
 *
 * `fetchImpl` is the fetch function (tests pass a fake), `getCsrfToken` returns the token
 * sent as X-CSRFToken on every request that is not a GET, and `baseUrl` is prepended to paths.
 */
export function createUploadApi({ fetchImpl = globalThis.fetch.bind(globalThis), getCsrfToken = () => '', baseUrl = '' } = {}) {
  async function request(method, path, { json, body, headers = {}, signal } = {}) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers }, signal }
    if (method !== 'GET') init.headers['X-CSRFToken'] = getCsrfToken()
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json'
      init.body = JSON.stringify(json)
    } else if (body !== undefined) {
      init.body = body
    }

    let response
    try {
      response = await fetchImpl(baseUrl + path, init)
    } catch (error) {
      if (error?.name === 'AbortError' || signal?.aborted) throw error
      throw new ApiError(0, `Network error: ${error?.message || error}. Check the connection.`)
    }

    const data = await readJson(response)
    if (!response.ok) {
      const detail =
        typeof data?.detail === 'string' && data.detail
          ? data.detail
          : `${method} ${path} failed with HTTP ${response.status} ${response.statusText}`.trim()
      throw new ApiError(response.status, detail, data)
    }
    return data
  }

  return {
    /** Starts an upload of `size` bytes named `filename` into dataset `dataset`. */
    createUpload({ dataset, filename, size }, signal) {
      return request('POST', '/api/uploads/', { json: { dataset, filename, size }, signal })
    },

    /** Returns the upload's state, including the committed `offset` to resume from. */
    getUpload(uuid, signal) {
      return request('GET', `/api/uploads/${uuid}/`, { signal })
    },

    /** Sends one chunk, a Blob or typed array `bytes` that starts at byte `offset`. */
    putChunk(uuid, { offset, bytes, sha256 }, signal) {
      return request('PUT', `/api/uploads/${uuid}/chunk/`, {
        body: bytes,
        headers: {
          'Content-Type': 'application/octet-stream',
          'Upload-Offset': String(offset),
          'Chunk-Sha256': sha256,
        },
        signal,
      })
    },

    /** Finishes the upload after the server checks `sha256` against the stored bytes. */
    complete(uuid, sha256, signal) {
      return request('POST', `/api/uploads/${uuid}/complete/`, { json: { sha256 }, signal })
    },

    /** Aborts the upload and lets the server delete its partial file. */
    abort(uuid, signal) {
      return request('DELETE', `/api/uploads/${uuid}/`, { signal })
    },
  }
}
