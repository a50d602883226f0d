/**
 * Mounts Vue components on server-rendered elements: each `[data-component="name"]`
 * element gets the component registered under that name, with its other data attributes
 * as props (`data-job-uuid` becomes the prop `jobUuid`).
 */

import { createApp } from 'vue'

/** Returns the props for an element: its data attributes except `component` and `mounted`. */
export function propsFromDataset(dataset) {
  const props = {}
  for (const [name, value] of Object.entries(dataset)) {
    if (name !== 'component' && name !== 'mounted') props[name] = value
  }
  return props
}

/**
 * Mounts every unmounted `[data-component]` element under `root` whose name is in
 * `components`, and returns the created Vue apps. Unknown names are logged and skipped.
 */
export function mountComponents(root, components) {
  const apps = []
  for (const element of root.querySelectorAll('[data-component]')) {
    if (element.dataset.mounted === 'true') continue
    const name = element.dataset.component
    const component = components[name]
    if (!component) {
      console.warn(`BioVLM: no component named "${name}", so the element stays as rendered.`, element)
      continue
    }
    const app = createApp(component, propsFromDataset(element.dataset))
    app.mount(element)
    element.dataset.mounted = 'true'
    apps.push(app)
  }
  return apps
}
