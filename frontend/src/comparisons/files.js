/**
 * Files from a drop: dropped folders are read recursively through the File and Directory
 * Entries API, so a whole folder of images can be dropped on a group.
 */

function readAllEntries(reader) {
  // readEntries may return a folder's entries over several calls; call it until it returns none.
  return new Promise((resolve, reject) => {
    const all = []
    const next = () =>
      reader.readEntries((batch) => {
        if (!batch.length) resolve(all)
        else {
          all.push(...batch)
          next()
        }
      }, reject)
    next()
  })
}

async function filesOfEntry(entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject))
    return [{ file, name: `${prefix}${file.name}` }]
  }
  const entries = await readAllEntries(entry.createReader())
  const nested = await Promise.all(entries.map((child) => filesOfEntry(child, `${prefix}${entry.name}/`)))
  return nested.flat()
}

/** Returns [{file, name}] for every file dropped, with folder paths in `name`. */
export async function filesFromDrop(dataTransfer) {
  const items = dataTransfer.items ? Array.from(dataTransfer.items) : []
  if (!items.length) return Array.from(dataTransfer.files || []).map((file) => ({ file, name: file.name }))
  // Entries must be taken before any await, while the drop event's data is still readable.
  const entries = items.filter((item) => item.kind === 'file').map((item) => [item.webkitGetAsEntry?.(), item.getAsFile()])
  const lists = await Promise.all(
    entries.map(([entry, file]) => (entry ? filesOfEntry(entry, '') : Promise.resolve(file ? [{ file, name: file.name }] : []))),
  )
  return lists.flat()
}

/** Splits `items` into batches of at most `count` items and `maxBytes` bytes (one oversized item stays alone). */
export function batches(items, count, maxBytes) {
  const result = []
  let current = []
  let bytes = 0
  for (const item of items) {
    const size = item.file.size
    if (current.length && (current.length >= count || bytes + size > maxBytes)) {
      result.push(current)
      current = []
      bytes = 0
    }
    current.push(item)
    bytes += size
  }
  if (current.length) result.push(current)
  return result
}

/** Sends a JSON or FormData request with the CSRF token; returns parsed JSON or throws Error(detail) with the field errors as `errors`. */
export async function apiRequest(method, url, { json, form, csrf }) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json', 'X-CSRFToken': csrf } }
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(json)
  } else if (form !== undefined) {
    init.body = form
  }
  let response
  try {
    response = await fetch(url, init)
  } catch (error) {
    throw new Error(`The server could not be reached (${error.message}); check the connection and try again.`)
  }
  const text = await response.text()
  let body = null
  try {
    body = text ? JSON.parse(text) : null
  } catch {
    body = null
  }
  if (!response.ok) {
    const failure = new Error(body?.detail || `The request failed with HTTP ${response.status}.`)
    // The API's field errors ({field: [message, ...]}), so a page can name fields by their labels.
    failure.errors = body?.errors
    throw failure
  }
  return body
}
