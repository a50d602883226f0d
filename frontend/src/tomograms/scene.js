/**
 * The three.js view of a run's particles inside the tomogram's bounding box, with orbit
 * controls, coloured by class and sized by class radius. It renders on demand, after a change
 * or a camera move.
 *
 * Up to SPHERE_MESH_MAX particles are an instanced mesh of lit spheres: one draw call of 80
 * triangles per particle. Larger sets are drawn as sphere impostors: one point per particle,
 * which a shader shades as a sphere of the particle's projected radius. While the camera moves,
 * only a fixed-order subsample is drawn (INTERACTION_IMPOSTORS or INTERACTION_SPHERES
 * particles, highlighted and selected ones always included), and the full set is drawn again
 * when the movement ends.
 *
 * Measured by the 3D frame-rate browser test in Chromium 156 with software WebGL (SwiftShader)
 * on a busy 2-core machine: 100,000 impostors at 2.9 frames per second with all drawn and 13.4
 * while orbiting; 5,000 instanced spheres at 1.4 with all drawn and 7.5 while orbiting.
 * The software renderer is limited by vertices, hence the low SPHERE_MESH_MAX.
 * NOTE: impostor depth is that of the sphere's centre, so overlapping spheres do not intersect.
 */

import * as THREE from 'three'
import { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js'
import { classColor, drawOrder } from './logic.js'

export const SPHERE_MESH_MAX = 5_000
// Particles drawn while the camera moves, sized so software WebGL on 2 cores keeps about 10
// frames per second or more; a hardware GPU draws the full set at that rate.
export const INTERACTION_IMPOSTORS = 20_000
export const INTERACTION_SPHERES = 1_000
const DIM_COLOR = new THREE.Color('#c9ced4')
const SELECTED_COLOR = new THREE.Color('#ffd400')

const IMPOSTOR_VERTEX = `
attribute float radius;
attribute vec3 color;
uniform float pixelsPerUnit;
varying vec3 vColor;
void main() {
  vColor = color;
  vec4 eye = modelViewMatrix * vec4(position, 1.0);
  gl_PointSize = max(2.0, 2.0 * radius * pixelsPerUnit / -eye.z);
  gl_Position = projectionMatrix * eye;
}`

const IMPOSTOR_FRAGMENT = `
varying vec3 vColor;
void main() {
  vec2 p = gl_PointCoord * 2.0 - 1.0;
  float r2 = dot(p, p);
  if (r2 > 1.0) discard;
  vec3 normal = vec3(p.x, -p.y, sqrt(1.0 - r2));
  float light = 0.5 + 0.5 * max(dot(normal, normalize(vec3(0.4, 0.5, 0.8))), 0.0);
  gl_FragColor = vec4(vColor * light, 1.0);
}`

export class ParticleScene {
  constructor(container, { onPick } = {}) {
    this.container = container
    this.onPick = onPick
    this.points = null
    this.visible = []
    this.slots = []
    this.interacting = false
    this.highlighted = new Set()
    this.selectedIndex = null
    this.renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true })
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2))
    this.renderer.setClearColor('#ffffff')
    container.appendChild(this.renderer.domElement)
    this.scene = new THREE.Scene()
    this.camera = new THREE.PerspectiveCamera(40, 1, 1, 1e6)
    this.controls = new OrbitControls(this.camera, this.renderer.domElement)
    this.controls.addEventListener('change', () => this.render())
    this.controls.addEventListener('start', () => this.beginInteraction())
    this.controls.addEventListener('end', () => this.endInteraction())
    this.scene.add(new THREE.AmbientLight('#ffffff', 1.6))
    const light = new THREE.DirectionalLight('#ffffff', 1.8)
    light.position.set(1, 2, 3)
    this.scene.add(light)
    this.resizeObserver = new ResizeObserver(() => this.resize())
    this.resizeObserver.observe(container)
    this.onPointerDown = (event) => {
      this.downAt = [event.clientX, event.clientY]
    }
    this.onPointerUp = (event) => this.handleClick(event)
    this.renderer.domElement.addEventListener('pointerdown', this.onPointerDown)
    this.renderer.domElement.addEventListener('pointerup', this.onPointerUp)
    this.resize()
  }

  /** Loads the particles (the API's column form) and frames the tomogram's bounding box. */
  setData(points) {
    this.points = points
    if (this.object) {
      this.scene.remove(this.object)
      this.object.geometry.dispose()
      this.object.material.dispose()
    }
    const count = Math.max(points.ids.length, 1)
    this.impostors = points.ids.length > SPHERE_MESH_MAX
    if (this.impostors) {
      const geometry = new THREE.BufferGeometry()
      geometry.setAttribute('position', new THREE.BufferAttribute(new Float32Array(3 * count), 3))
      geometry.setAttribute('color', new THREE.BufferAttribute(new Float32Array(3 * count), 3))
      geometry.setAttribute('radius', new THREE.BufferAttribute(new Float32Array(count), 1))
      const material = new THREE.ShaderMaterial({
        uniforms: { pixelsPerUnit: { value: 1 } },
        vertexShader: IMPOSTOR_VERTEX,
        fragmentShader: IMPOSTOR_FRAGMENT,
      })
      this.object = new THREE.Points(geometry, material)
      this.object.frustumCulled = false
    } else {
      const material = new THREE.MeshLambertMaterial({ color: '#ffffff' })
      this.object = new THREE.InstancedMesh(new THREE.IcosahedronGeometry(1, 1), material, count)
      this.object.instanceMatrix.setUsage(THREE.DynamicDrawUsage)
      this.object.count = 0
    }
    this.scene.add(this.object)

    const [low, high] = points.bounds
    const size = new THREE.Vector3(high[0] - low[0], high[1] - low[1], high[2] - low[2])
    const centre = new THREE.Vector3((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, (low[2] + high[2]) / 2)
    if (this.box) this.scene.remove(this.box)
    this.box = new THREE.LineSegments(
      new THREE.EdgesGeometry(new THREE.BoxGeometry(size.x, size.y, size.z)),
      new THREE.LineBasicMaterial({ color: '#5f6b76' }),
    )
    this.box.position.copy(centre)
    this.scene.add(this.box)
    const extent = Math.max(size.x, size.y, size.z)
    this.camera.near = extent / 1000
    this.camera.far = extent * 20
    // Back off along a fixed oblique direction until the box's bounding sphere fits the narrower
    // of the two fields of view, with a 10% margin.
    const radius = size.length() / 2
    const halfFov = THREE.MathUtils.degToRad(this.camera.fov) / 2
    const narrowHalfFov = Math.min(halfFov, Math.atan(Math.tan(halfFov) * this.camera.aspect))
    const distance = (1.1 * radius) / Math.sin(narrowHalfFov)
    const direction = new THREE.Vector3(0.9, -1.2, 0.9).normalize()
    this.camera.position.copy(centre).addScaledVector(direction, distance)
    this.camera.up.set(0, 0, 1)
    this.camera.updateProjectionMatrix()
    this.controls.target.copy(centre)
    this.controls.update()
    this.resize()
  }

  /** Shows only the particles at `indices` (into the column arrays). */
  setVisible(indices) {
    this.visible = indices
    this.fill()
  }

  /** Writes the visible particles into the draw buffers, prioritised ones first (see drawOrder). */
  fill() {
    if (!this.object || !this.points) return
    const { ids, positions, class_indices: classIndices, radii_angstrom: radii } = this.points
    const priority = new Set()
    if (this.highlighted.size > 0 || this.selectedIndex !== null) {
      for (const i of this.visible) {
        if (i === this.selectedIndex || this.highlighted.has(ids[i])) priority.add(i)
      }
    }
    this.slots = drawOrder(this.visible, priority)
    const slots = this.slots
    if (this.impostors) {
      const geometry = this.object.geometry
      const target = geometry.attributes.position.array
      const sizes = geometry.attributes.radius.array
      for (let slot = 0; slot < slots.length; slot += 1) {
        const i = slots[slot]
        target[3 * slot] = positions[3 * i]
        target[3 * slot + 1] = positions[3 * i + 1]
        target[3 * slot + 2] = positions[3 * i + 2]
        sizes[slot] = radii[classIndices[i]]
      }
      geometry.attributes.position.needsUpdate = true
      geometry.attributes.radius.needsUpdate = true
    } else {
      const matrix = new THREE.Matrix4()
      const position = new THREE.Vector3()
      const scale = new THREE.Vector3()
      const rotation = new THREE.Quaternion()
      for (let slot = 0; slot < slots.length; slot += 1) {
        const i = slots[slot]
        const radius = radii[classIndices[i]]
        position.set(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
        scale.set(radius, radius, radius)
        this.object.setMatrixAt(slot, matrix.compose(position, rotation, scale))
      }
      this.object.instanceMatrix.needsUpdate = true
    }
    this.applyDrawCount()
    if (!this.impostors) this.object.computeBoundingSphere()
    this.updateColors()
  }

  /** Draws the whole visible set, or its prefix of the interaction budget while the camera moves. */
  applyDrawCount() {
    const budget = this.impostors ? INTERACTION_IMPOSTORS : INTERACTION_SPHERES
    const count = this.interacting ? Math.min(budget, this.slots.length) : this.slots.length
    if (this.impostors) this.object.geometry.setDrawRange(0, count)
    else this.object.count = count
  }

  beginInteraction() {
    this.interacting = true
    if (this.object) this.applyDrawCount()
  }

  endInteraction() {
    this.interacting = false
    if (this.object) this.applyDrawCount()
    this.render()
  }

  /** Highlights the particles whose ids are in `ids`, dimming the others; an empty list clears it. */
  setHighlight(ids) {
    this.highlighted = new Set(ids)
    this.fill()
  }

  select(index) {
    this.selectedIndex = index
    this.fill()
  }

  updateColors() {
    if (!this.object || !this.points) return
    const color = new THREE.Color()
    const { ids, class_names: names, class_indices: classIndices } = this.points
    const dimOthers = this.highlighted.size > 0
    const colors = this.impostors ? this.object.geometry.attributes.color.array : null
    for (let slot = 0; slot < this.slots.length; slot += 1) {
      const i = this.slots[slot]
      if (i === this.selectedIndex) color.copy(SELECTED_COLOR)
      else if (dimOthers && !this.highlighted.has(ids[i])) color.copy(DIM_COLOR)
      else color.set(classColor(names[classIndices[i]]))
      if (colors) color.toArray(colors, 3 * slot)
      else this.object.setColorAt(slot, color)
    }
    if (colors) this.object.geometry.attributes.color.needsUpdate = true
    else if (this.object.instanceColor) this.object.instanceColor.needsUpdate = true
    this.render()
  }

  /** Returns the column index of the particle drawn at canvas pixel (x, y), nearest the camera first, or null. */
  particleAt(x, y) {
    const rect = this.renderer.domElement.getBoundingClientRect()
    const pixelsPerUnit = rect.height / (2 * Math.tan(THREE.MathUtils.degToRad(this.camera.fov) / 2))
    const { positions, class_indices: classIndices, radii_angstrom: radii } = this.points
    const point = new THREE.Vector3()
    const eye = new THREE.Vector3()
    let best = null
    let bestDepth = Infinity
    for (const i of this.visible) {
      point.set(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
      eye.copy(point).applyMatrix4(this.camera.matrixWorldInverse)
      const depth = -eye.z
      if (depth <= 0) continue
      point.project(this.camera)
      const screenX = ((point.x + 1) / 2) * rect.width
      const screenY = ((1 - point.y) / 2) * rect.height
      const screenRadius = Math.max(3, (radii[classIndices[i]] * pixelsPerUnit) / depth)
      if (Math.hypot(screenX - x, screenY - y) <= screenRadius && depth < bestDepth) {
        best = i
        bestDepth = depth
      }
    }
    return best
  }

  handleClick(event) {
    if (!this.points || !this.downAt) return
    if (Math.hypot(event.clientX - this.downAt[0], event.clientY - this.downAt[1]) > 4) return
    const rect = this.renderer.domElement.getBoundingClientRect()
    const index = this.particleAt(event.clientX - rect.left, event.clientY - rect.top)
    if (index !== null && this.onPick) this.onPick(index)
  }

  /** Returns the canvas position in CSS pixels of the particle at column index `i`. */
  screenPosition(i) {
    const { positions } = this.points
    return this.projectPoint(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
  }

  /** Returns the canvas position in CSS pixels of the point (x, y, z) in angstroms. */
  projectPoint(x, y, z) {
    const point = new THREE.Vector3(x, y, z).project(this.camera)
    const rect = this.renderer.domElement.getBoundingClientRect()
    return { x: ((point.x + 1) / 2) * rect.width, y: ((1 - point.y) / 2) * rect.height }
  }

  resize() {
    const width = this.container.clientWidth || 400
    const height = this.container.clientHeight || 400
    this.renderer.setSize(width, height)
    this.camera.aspect = width / height
    this.camera.updateProjectionMatrix()
    if (this.impostors) {
      const pixels = height * this.renderer.getPixelRatio()
      this.object.material.uniforms.pixelsPerUnit.value = pixels / (2 * Math.tan(THREE.MathUtils.degToRad(this.camera.fov) / 2))
    }
    this.render()
  }

  render() {
    this.renderer.render(this.scene, this.camera)
  }

  /**
   * Orbits the camera for `milliseconds` twice, rendering every animation frame: once as while a
   * user drags (the reduced set) and once drawing every visible particle. Resolves to
   * `{ interactive, full }` in frames per second and `drawnWhileMoving`, the particles drawn then.
   */
  async measureFps(milliseconds = 2000) {
    const orbit = () =>
      new Promise((resolve) => {
        let frames = 0
        const start = performance.now()
        const step = (now) => {
          this.controls.autoRotate = true
          // update() renders through the 'change' listener when the camera moved.
          if (!this.controls.update()) this.render()
          frames += 1
          if (now - start < milliseconds) {
            requestAnimationFrame(step)
          } else {
            this.controls.autoRotate = false
            resolve((frames * 1000) / (now - start))
          }
        }
        requestAnimationFrame(step)
      })
    this.beginInteraction()
    const drawnWhileMoving = this.impostors ? this.object.geometry.drawRange.count : this.object.count
    const interactive = await orbit()
    this.endInteraction()
    const full = await orbit()
    return { interactive, full, drawnWhileMoving }
  }

  dispose() {
    this.resizeObserver.disconnect()
    this.renderer.domElement.removeEventListener('pointerdown', this.onPointerDown)
    this.renderer.domElement.removeEventListener('pointerup', this.onPointerUp)
    this.controls.dispose()
    this.renderer.dispose()
  }
}
