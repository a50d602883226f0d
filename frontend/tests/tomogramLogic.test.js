import { describe, expect, it } from 'vitest'
import {
  circleAt,
  classColor,
  countByClass,
  drawOrder,
  filterIndices,
  fieldLabel,
  formToParams,
  labelFieldNames,
  parseMrcHeader,
  resultParticleIds,
  sliceCircles,
} from '../src/tomograms/logic.js'

// Three particles in the API's column form: two ribosomes (radius 150 Å) and one apo-ferritin (60 Å).
const points = {
  class_names: ['apo-ferritin', 'ribosome'],
  radii_angstrom: [60, 150],
  ids: [10, 11, 12],
  class_indices: [1, 1, 0],
  positions: [100, 200, 300, 400, 500, 600, 50, 60, 300],
  scores: [0.9, 0.4, 0.7],
  bounds: [
    [0, 0, 0],
    [1000, 1000, 1000],
  ],
}

describe('filterIndices', () => {
  it('keeps every particle with no filter', () => {
    expect(filterIndices(points, {})).toEqual([0, 1, 2])
  })

  it('filters by class and minimum score', () => {
    expect(filterIndices(points, { classes: new Set(['ribosome']) })).toEqual([0, 1])
    expect(filterIndices(points, { minScore: 0.5 })).toEqual([0, 2])
    expect(filterIndices(points, { classes: new Set(['ribosome']), minScore: 0.5 })).toEqual([0])
  })

  it('ignores a minimum score that is not a number', () => {
    expect(filterIndices(points, { minScore: Number.NaN })).toEqual([0, 1, 2])
  })
})

describe('countByClass', () => {
  it('counts each class, zero included', () => {
    expect(countByClass(points, [0, 1])).toEqual({ 'apo-ferritin': 0, ribosome: 2 })
  })
})

describe('sliceCircles', () => {
  it('draws particles whose sphere cuts the section, with the cut radius in voxels', () => {
    // Section 30 at 10 Å lies at z = 300 Å: particles 0 and 2 are centred on it.
    const circles = sliceCircles(points, [0, 1, 2], 30, 10)
    expect(circles.map((circle) => circle.id)).toEqual([10, 12])
    expect(circles[0]).toMatchObject({ x: 10, y: 20, r: 15, className: 'ribosome' })
    expect(circles[1].r).toBeCloseTo(6)
  })

  it('shrinks the circle away from the centre and drops particles beyond their radius', () => {
    // z = 390 Å is 90 Å from particle 0 (radius 150 Å): the cut radius is 120 Å.
    const circles = sliceCircles(points, [0, 2], 39, 10)
    expect(circles.map((circle) => circle.id)).toEqual([10])
    expect(circles[0].r).toBeCloseTo(12)
  })
})

describe('circleAt', () => {
  const circles = [
    { id: 1, x: 10, y: 10, r: 5 },
    { id: 2, x: 13, y: 10, r: 5 },
  ]

  it('returns the circle with the nearest centre', () => {
    expect(circleAt(circles, 12, 10).id).toBe(2)
    expect(circleAt(circles, 9, 10).id).toBe(1)
  })

  it('returns null outside every circle', () => {
    expect(circleAt(circles, 40, 40)).toBeNull()
  })
})

describe('resultParticleIds', () => {
  it('lists the particles each tool names', () => {
    expect(resultParticleIds('neighbors', { particle_id: 3, particles: [{ id: 4 }, { id: 5 }] })).toEqual([4, 5, 3])
    expect(resultParticleIds('neighbors', { particle_id: null, particles: [{ id: 4 }] })).toEqual([4])
    expect(resultParticleIds('clusters', { clusters: [{ particle_ids: [1, 2] }, { particle_ids: [7] }] })).toEqual([1, 2, 7])
    expect(resultParticleIds('nearest_neighbor_distances', { particle_ids: [8, 9] })).toEqual([8, 9])
    expect(resultParticleIds('region_composition', { count: 3 })).toEqual([])
    expect(resultParticleIds('clusters', null)).toEqual([])
  })
})

describe('formToParams', () => {
  const schema = {
    properties: {
      radius_angstrom: { type: 'number' },
      point: { type: 'array' },
      particle_id: { type: 'integer' },
      class_name: { type: 'string' },
      include_distances: { type: 'boolean' },
    },
  }

  it('parses numbers and points and leaves out empty fields', () => {
    const params = formToParams(schema, { radius_angstrom: '250', point: '1, 2 3', particle_id: '', class_name: 'ribosome' })
    expect(params).toEqual({ radius_angstrom: 250, point: [1, 2, 3], class_name: 'ribosome' })
  })

  it('names the field of an invalid value', () => {
    expect(() => formToParams(schema, { radius_angstrom: 'far' })).toThrow(/^Radius \(Å\): "far" is not a number/)
    expect(() => formToParams(schema, { point: '1 2' })).toThrow(/^Centre point x, y, z \(Å\): enter three numbers/)
  })

  it('names the field of an invalid value', () => {
    let caught = null
    try {
      formToParams(schema, { point: '1 2' })
    } catch (error) {
      caught = error
    }
    expect(caught.field).toBe('point')
  })
})

describe('labelFieldNames', () => {
  it('replaces quoted and bare parameter names by their labels', () => {
    expect(labelFieldNames("Missing parameter 'radius_angstrom' for neighbors.")).toBe(
      'Missing parameter "Radius (Å)" for neighbors.',
    )
    expect(labelFieldNames('neighbors needs exactly one of point or particle_id.', ['point', 'particle_id'])).toBe(
      'neighbors needs exactly one of Centre point x, y, z (Å) or Particle id.',
    )
  })

  it('leaves names outside the given list alone', () => {
    expect(labelFieldNames('Invalid bins 300; use at most 200.', ['radius_angstrom'])).toBe('Invalid bins 300; use at most 200.')
  })
})

describe('fieldLabel', () => {
  it('labels known fields with units and spaces out unknown ones', () => {
    expect(fieldLabel('link_distance_angstrom')).toBe('Link distance (Å)')
    expect(fieldLabel('new_field')).toBe('new field')
  })
})

function header({ nx = 96, ny = 80, nz = 48, mode = 2, cell = [960, 800, 480], sampling = null, stamp = 0x44 } = {}) {
  const buffer = new ArrayBuffer(1024)
  const view = new DataView(buffer)
  const little = stamp !== 0x11
  ;[nx, ny, nz, mode].forEach((value, index) => view.setInt32(4 * index, value, little))
  ;(sampling || [nx, ny, nz]).forEach((value, index) => view.setInt32(28 + 4 * index, value, little))
  cell.forEach((value, index) => view.setFloat32(40 + 4 * index, value, little))
  ;[1, 2, 3].forEach((value, index) => view.setInt32(64 + 4 * index, value, little))
  view.setUint8(212, stamp)
  return buffer
}

describe('parseMrcHeader', () => {
  it('reads shape, mode and voxel size', () => {
    const parsed = parseMrcHeader(header(), 1024 + 96 * 80 * 48 * 4)
    expect(parsed.shape).toEqual({ x: 96, y: 80, z: 48 })
    expect(parsed.modeName).toBe('float32')
    expect(parsed.voxelSize).toEqual([10, 10, 10])
    expect(parsed.warnings).toEqual([])
  })

  it('reads big-endian files', () => {
    const parsed = parseMrcHeader(header({ stamp: 0x11 }), 1024 + 96 * 80 * 48 * 4)
    expect(parsed.shape).toEqual({ x: 96, y: 80, z: 48 })
    expect(parsed.warnings).toContain('The file is big-endian.')
  })

  it('warns about a placeholder voxel size and a truncated file', () => {
    const parsed = parseMrcHeader(header({ cell: [96, 80, 48] }), 5000)
    expect(parsed.voxelSize).toBeNull()
    expect(parsed.warnings[0]).toMatch(/placeholder/)
    expect(parsed.warnings[1]).toMatch(/truncated/)
  })

  it('rejects short files and unsupported modes', () => {
    expect(parseMrcHeader(new ArrayBuffer(10)).error).toMatch(/fewer than an MRC header/)
    expect(parseMrcHeader(header({ mode: 4 })).error).toMatch(/mode 4 is not supported/)
  })
})

describe('classColor', () => {
  it('gives each class its own colour and unknown names grey', () => {
    const colours = ['apo-ferritin', 'beta-amylase', 'beta-galactosidase', 'ribosome', 'thyroglobulin', 'virus-like-particle'].map(classColor)
    expect(new Set(colours).size).toBe(6)
    expect(classColor('unknown')).toBe('#888888')
  })
})

describe('drawOrder', () => {
  const indices = Array.from({ length: 1000 }, (_, i) => i)

  it('keeps every index exactly once', () => {
    const order = drawOrder(indices)
    expect(order).toHaveLength(1000)
    expect(new Set(order).size).toBe(1000)
  })

  it('puts prioritised indices first in their order', () => {
    const order = drawOrder(indices, new Set([900, 5, 42]))
    expect(order.slice(0, 3)).toEqual([5, 42, 900])
    expect(order.slice(3)).not.toContain(42)
  })

  it('gives the same order for the same seed', () => {
    expect(drawOrder(indices)).toEqual(drawOrder(indices))
    expect(drawOrder(indices, new Set(), 2)).not.toEqual(drawOrder(indices))
  })

  it('makes a prefix a spread-out subsample', () => {
    const prefix = drawOrder(indices).slice(0, 100)
    const inFirstHalf = prefix.filter((i) => i < 500).length
    expect(inFirstHalf).toBeGreaterThan(30)
    expect(inFirstHalf).toBeLessThan(70)
  })
})
