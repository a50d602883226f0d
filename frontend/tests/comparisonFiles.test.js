import { describe, expect, it } from 'vitest'
import { batches, filesFromDrop } from '../src/comparisons/files.js'

const item = (name, size) => ({ name, file: { name, size } })

describe('batches', () => {
  it('splits by count', () => {
    const items = [1, 2, 3, 4, 5].map((n) => item(`f${n}`, 1))
    expect(batches(items, 2, 100).map((batch) => batch.length)).toEqual([2, 2, 1])
  })

  it('splits by bytes', () => {
    const items = [item('a', 60), item('b', 60), item('c', 30)]
    expect(batches(items, 10, 100).map((batch) => batch.map((entry) => entry.name))).toEqual([['a'], ['b', 'c']])
  })

  it('keeps an oversized file alone', () => {
    const items = [item('small', 10), item('huge', 500), item('tail', 10)]
    expect(batches(items, 10, 100).map((batch) => batch.map((entry) => entry.name))).toEqual([['small'], ['huge'], ['tail']])
  })

  it('returns nothing for no files', () => {
    expect(batches([], 10, 100)).toEqual([])
  })
})

function fileEntry(name) {
  return { isFile: true, isDirectory: false, name, file: (resolve) => resolve({ name, size: 1 }) }
}

function folderEntry(name, children) {
  return {
    isFile: false,
    isDirectory: true,
    name,
    createReader() {
      // Two calls return the children in two batches, as browsers may; the third returns none.
      const pending = [children.slice(0, 1), children.slice(1), []]
      return { readEntries: (resolve) => resolve(pending.shift()) }
    },
  }
}

describe('filesFromDrop', () => {
  it('reads nested folders', async () => {
    const folder = folderEntry('plate1', [fileEntry('a.png'), folderEntry('well2', [fileEntry('b.png'), fileEntry('c.png')])])
    const transfer = {
      items: [
        { kind: 'file', webkitGetAsEntry: () => folder, getAsFile: () => null },
        { kind: 'file', webkitGetAsEntry: () => fileEntry('top.zip'), getAsFile: () => ({ name: 'top.zip', size: 1 }) },
        { kind: 'string', webkitGetAsEntry: () => null, getAsFile: () => null },
      ],
    }
    const names = (await filesFromDrop(transfer)).map((entry) => entry.name)
    expect(names).toEqual(['plate1/a.png', 'plate1/well2/b.png', 'plate1/well2/c.png', 'top.zip'])
  })

  it('falls back to the file list', async () => {
    const files = [{ name: 'x.png', size: 3 }]
    const result = await filesFromDrop({ files })
    expect(result).toEqual([{ file: files[0], name: 'x.png' }])
  })
})
