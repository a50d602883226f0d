import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

const root = fileURLToPath(new URL('.', import.meta.url))

// Django serves the build from static/dist through django-vite, which looks entries up in
// static/dist/.vite/manifest.json by their path relative to this root ("src/main.js").
export default defineConfig({
  root,
  base: '/static/dist/',
  plugins: [vue()],
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../static/dist', import.meta.url)),
    emptyOutDir: true,
    manifest: true,
    // three.js alone is about 570 kB minified. It is split into its own chunk that only the
    // tomogram run page loads, so the warning limit is raised above it.
    chunkSizeWarningLimit: 700,
    rolldownOptions: {
      input: fileURLToPath(new URL('./src/main.js', import.meta.url)),
    },
  },
  test: {
    include: ['tests/**/*.test.js'],
    environment: 'node',
  },
})
