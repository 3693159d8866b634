// Builds the web UI (src/ui) into dist/ui with esbuild: one minified ES module bundle, the CSS it imports
// (ours and the libraries') bundled into app.css, and the page. `npm run build` runs it; the browser tests call buildUi() into a directory of their own.
//
//   node scripts/build-ui.mjs [outdir]      (default: dist/ui)
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Writes index.html, app.js, its chunks and app.css (+ source maps) into `outdir` (replaced whole). */
export async function buildUi(outdir = join(root, 'dist', 'ui')) {
  const src = join(root, 'src', 'ui');
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  await build({
    entryPoints: { app: join(src, 'main.tsx') },
    outdir,
    // Pages loaded on demand (the container page's terminal and charts) become chunk-*.js files.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'linked',
    logLevel: 'warning',
  });
  await copyFile(join(src, 'index.html'), join(outdir, 'index.html'));
  return outdir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildUi(process.argv[2]);
}
