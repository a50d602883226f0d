/**
 * Returns the value of cookie `name` from a `document.cookie` string, or null when missing.
 */
export function readCookie(cookieString, name) {
  for (const part of (cookieString || '').split(';')) {
    const separator = part.indexOf('=')
    if (separator === -1) continue
    if (part.slice(0, separator).trim() === name) {
      return decodeURIComponent(part.slice(separator + 1).trim())
    }
  }
  return null
}

/**
 * Returns Django's CSRF token: the `csrftoken` cookie, or else the hidden
 * `csrfmiddlewaretoken` input of a form on the page (for CSRF_COOKIE_HTTPONLY set-ups).
 */
export function csrfToken(doc = document) {
  const fromCookie = readCookie(doc.cookie, 'csrftoken')
  if (fromCookie) return fromCookie
  const input = doc.querySelector('input[name="csrfmiddlewaretoken"]')
  return input ? input.value : ''
}
