/**
 * Pure helpers of the tomogram run page: class colours, filters, the picks that cut a slice,
 * MRC header parsing for the upload preview, and query form values to tool parameters.
 * Positions are x, y, z in angstroms; slices and pixels are voxel indices.
 */

/** Colours of the six benchmark classes, chosen to stay distinct on grey slices and in 3D. */
export const CLASS_COLORS = {
  'apo-ferritin': '#e6194b',
  'beta-amylase': '#3cb44b',
  'beta-galactosidase': '#4363d8',
  ribosome: '#f58231',
  thyroglobulin: '#911eb4',
  'virus-like-particle': '#14b8c4',
}
const FALLBACK_COLOR = '#888888'

export function classColor(name) {
  return CLASS_COLORS[name] || FALLBACK_COLOR
}

/**
 * Returns the indices of the particles in `points` (the API's column form) that pass
 * `filter`: `classes`, a Set of visible class names, and `minScore`.
 */
export function filterIndices(points, filter) {
  const indices = []
  const minScore = Number.isFinite(filter.minScore) ? filter.minScore : -Infinity
  for (let i = 0; i < points.ids.length; i += 1) {
    const name = points.class_names[points.class_indices[i]]
    if (filter.classes && !filter.classes.has(name)) continue
    if (points.scores[i] < minScore) continue
    indices.push(i)
  }
  return indices
}

/** Returns the number of particles of each class name among `indices`. */
export function countByClass(points, indices) {
  const counts = Object.fromEntries(points.class_names.map((name) => [name, 0]))
  for (const i of indices) counts[points.class_names[points.class_indices[i]]] += 1
  return counts
}

/**
 * Returns the circles that the particles among `indices` cut in section `z`: a particle of
 * radius R centred dz angstroms from the section plane (z * voxelSize) shows as a circle of
 * radius sqrt(R² - dz²). Centres and radii are in voxels.
 */
export function sliceCircles(points, indices, z, voxelSize) {
  const planeZ = z * voxelSize
  const circles = []
  for (const i of indices) {
    const classIndex = points.class_indices[i]
    const radius = points.radii_angstrom[classIndex]
    const dz = points.positions[3 * i + 2] - planeZ
    if (Math.abs(dz) >= radius) continue
    circles.push({
      index: i,
      id: points.ids[i],
      className: points.class_names[classIndex],
      x: points.positions[3 * i] / voxelSize,
      y: points.positions[3 * i + 1] / voxelSize,
      r: Math.sqrt(radius * radius - dz * dz) / voxelSize,
    })
  }
  return circles
}

/** Returns the particle whose circle contains (x, y) voxels, the nearest centre winning, or null. */
export function circleAt(circles, x, y) {
  let best = null
  let bestDistance = Infinity
  for (const circle of circles) {
    const distance = Math.hypot(circle.x - x, circle.y - y)
    if (distance <= circle.r && distance < bestDistance) {
      best = circle
      bestDistance = distance
    }
  }
  return best
}

/** Returns the particle ids a query tool's result names, to highlight them in the 3D view. */
export function resultParticleIds(tool, result) {
  if (!result) return []
  if (tool === 'neighbors') {
    const ids = result.particles.map((particle) => particle.id)
    if (result.particle_id !== null && result.particle_id !== undefined) ids.push(result.particle_id)
    return ids
  }
  if (tool === 'nearest_neighbor_distances') return result.particle_ids || []
  if (tool === 'clusters') return result.clusters.flatMap((cluster) => cluster.particle_ids)
  return []
}

/** Readable labels, with units, of the query tools' parameters, keyed by the API's field names. */
export const FIELD_LABELS = {
  radius_angstrom: 'Radius (Å)',
  point: 'Centre point x, y, z (Å)',
  particle_id: 'Particle id',
  class_name: 'Class',
  limit: 'Maximum listed',
  shape: 'Region shape',
  box_min: 'Box corner x, y, z (Å)',
  box_max: 'Opposite box corner x, y, z (Å)',
  center: 'Sphere centre x, y, z (Å)',
  class_a: 'From class',
  class_b: 'To class',
  bins: 'Histogram bins',
  simulations: 'Simulations',
  significance: 'Significance level',
  max_sample: 'Particles sampled',
  seed: 'Random seed',
  include_distances: 'List every distance',
  link_distance_angstrom: 'Link distance (Å)',
  min_size: 'Minimum cluster size',
}

/** Returns the label of a query parameter, or the name with spaces for one not in FIELD_LABELS. */
export function fieldLabel(name) {
  return FIELD_LABELS[name] || name.replaceAll('_', ' ')
}

/**
 * Returns an API error message with each of `names` (a tool's parameter names) replaced by its
 * label, so the page names a field as its form does. The API's JSON keeps the field names.
 */
export function labelFieldNames(message, names = Object.keys(FIELD_LABELS)) {
  let text = message
  const longestFirst = [...names].filter((name) => name in FIELD_LABELS).sort((left, right) => right.length - left.length)
  for (const name of longestFirst) {
    text = text.replaceAll(`'${name}'`, `"${FIELD_LABELS[name]}"`)
    text = text.replace(new RegExp(`\\b${name}\\b`, 'g'), FIELD_LABELS[name])
  }
  return text
}

function fieldError(name, message) {
  const error = new Error(`${fieldLabel(name)}: ${message}`)
  error.field = name
  return error
}

/**
 * Converts the text values of a query form into tool parameters by the tool's JSON schema:
 * empty fields are left out, numbers parsed, and points read as three numbers. Throws an
 * Error whose message starts with the field's label, and whose `field` is the field's name,
 * when a value is not a number.
 */
export function formToParams(schema, values) {
  const params = {}
  for (const [name, property] of Object.entries(schema.properties)) {
    const raw = values[name]
    if (raw === undefined || raw === null || raw === '') continue
    if (property.type === 'boolean') {
      params[name] = Boolean(raw)
    } else if (property.type === 'array') {
      const numbers = String(raw).trim().split(/[\s,]+/).map(Number)
      if (numbers.length !== 3 || numbers.some((value) => !Number.isFinite(value))) {
        throw fieldError(name, 'enter three numbers x, y, z in angstroms.')
      }
      params[name] = numbers
    } else if (property.type === 'number' || property.type === 'integer') {
      const value = Number(raw)
      if (!Number.isFinite(value)) throw fieldError(name, `${JSON.stringify(raw)} is not a number.`)
      params[name] = value
    } else {
      params[name] = String(raw)
    }
  }
  return params
}

const MRC_MODES = { 0: 'int8', 1: 'int16', 2: 'float32', 6: 'uint16', 12: 'float16' }

/**
 * Parses the first 1024 bytes of an MRC file into the facts the upload form previews:
 * grid size, mode, voxel size and warnings. Returns { error } when it is not an MRC header.
 */
export function parseMrcHeader(buffer, fileSize) {
  if (buffer.byteLength < 1024) return { error: `The file has ${buffer.byteLength} bytes, fewer than an MRC header.` }
  const view = new DataView(buffer)
  const stamp = view.getUint8(212)
  let little = stamp !== 0x11
  if (stamp !== 0x44 && stamp !== 0x11) {
    const mode = view.getInt32(12, true)
    little = mode >= 0 && mode <= 200
  }
  const int = (offset) => view.getInt32(offset, little)
  const float = (offset) => view.getFloat32(offset, little)
  const [nx, ny, nz, mode] = [int(0), int(4), int(8), int(12)]
  const sampling = [int(28), int(32), int(36)]
  const cell = [float(40), float(44), float(48)]
  const axes = [int(64), int(68), int(72)]
  const extended = int(92)
  const warnings = []
  if (!(mode in MRC_MODES)) return { error: `MRC mode ${mode} is not supported; expected 0, 1, 2, 6 or 12.` }
  if (Math.min(nx, ny, nz) < 1) return { error: `The header gives grid size ${nx} × ${ny} × ${nz}.` }
  let voxelSize = null
  if (sampling.every((m) => m > 0) && cell.every((c) => Number.isFinite(c) && c > 0)) {
    voxelSize = cell.map((c, axis) => c / sampling[axis])
    if (voxelSize.every((size) => Math.abs(size - 1) < 1e-6)) {
      voxelSize = null
      warnings.push('The header gives 1.0 Å per voxel, a placeholder: set the real voxel size.')
    }
  } else {
    warnings.push('The header gives no voxel size: set it before a run.')
  }
  if (axes.join(',') !== '1,2,3') warnings.push(`Axis order MAPC, MAPR, MAPS is ${axes.join(', ')}; the data will be transposed.`)
  const itemBytes = { 0: 1, 1: 2, 2: 4, 6: 2, 12: 2 }[mode]
  const expected = 1024 + Math.max(extended, 0) + nx * ny * nz * itemBytes
  if (fileSize !== undefined && fileSize < expected) {
    warnings.push(`The file is truncated: the header needs ${expected} bytes, but the file has ${fileSize}.`)
  }
  if (!little) warnings.push('The file is big-endian.')
  return { shape: { x: nx, y: ny, z: nz }, mode, modeName: MRC_MODES[mode], voxelSize, warnings }
}

/**
 * Returns the draw order of `indices`: those in `priority` (a Set of column indices) first, in
 * their given order, then the rest in a fixed pseudo-random order. Drawing only a prefix of this
 * order gives a spatially uniform subsample that still contains every prioritised particle, and
 * the same prefix on every frame, so a reduced view does not flicker.
 */
export function drawOrder(indices, priority = new Set(), seed = 1) {
  const first = []
  const rest = []
  for (const i of indices) (priority.has(i) ? first : rest).push(i)
  // Fisher-Yates with mulberry32, a small seeded generator, so the order is reproducible.
  let state = seed >>> 0
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let k = rest.length - 1; k > 0; k -= 1) {
    const j = Math.floor(random() * (k + 1))
    const swap = rest[k]
    rest[k] = rest[j]
    rest[j] = swap
  }
  return first.concat(rest)
}
