import { describe, expect, it } from 'vitest'
import { csrfToken, readCookie } from '../src/lib/csrf.js'
import { propsFromDataset } from '../src/mount.js'

describe('readCookie', () => {
  it('finds a cookie among others', () => {
    expect(readCookie('sessionid=abc; csrftoken=tok123; theme=dark', 'csrftoken')).toBe('tok123')
  })

  it('matches whole names only', () => {
    expect(readCookie('xcsrftoken=bad; csrftoken=good', 'csrftoken')).toBe('good')
  })

  it('decodes values', () => {
    expect(readCookie('name=a%20b', 'name')).toBe('a b')
  })

  it('returns null when missing', () => {
    expect(readCookie('', 'csrftoken')).toBeNull()
    expect(readCookie('flag; other=1', 'csrftoken')).toBeNull()
  })
})

describe('csrfToken', () => {
  it('prefers the cookie', () => {
    const doc = { cookie: 'csrftoken=from-cookie', querySelector: () => ({ value: 'from-form' }) }
    expect(csrfToken(doc)).toBe('from-cookie')
  })

  it('falls back to a form field', () => {
    const doc = { cookie: '', querySelector: () => ({ value: 'from-form' }) }
    expect(csrfToken(doc)).toBe('from-form')
  })

  it('is empty when neither exists', () => {
    expect(csrfToken({ cookie: '', querySelector: () => null })).toBe('')
  })
})

describe('propsFromDataset', () => {
  it('drops component and mounted', () => {
    const props = propsFromDataset({ component: 'uploader', mounted: 'true', datasetUuid: 'd-1', reloadOnDone: 'false' })
    expect(props).toEqual({ datasetUuid: 'd-1', reloadOnDone: 'false' })
  })
})
