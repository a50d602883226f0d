/** JSON requests to the run's API with the session cookie and Django's CSRF token. */

import { csrfToken } from '../lib/csrf.js'

export async function requestJson(url, { method = 'GET', body } = {}) {
  const options = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } }
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json'
    options.headers['X-CSRFToken'] = csrfToken()
    options.body = JSON.stringify(body)
  }
  const response = await fetch(url, options)
  let data = null
  try {
    data = await response.json()
  } catch {
    data = null
  }
  if (!response.ok) {
    const error = new Error(data?.detail || `The request failed with HTTP ${response.status}.`)
    error.field = data?.field || null
    error.status = response.status
    throw error
  }
  return data
}
