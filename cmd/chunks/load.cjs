/**
 * Loads a chunk of the built CLI: a rarely used dependency that esbuild bundled apart from
 * dist/trust-protocol.cjs, so that every start does not load (and V8 pre-parse, or deserialise from
 * the code cache) it. The MCP SDK with zod (`mcp`, serve's /v1/mcp) and the PostgreSQL driver
 * (`store`) were two thirds of the bundle; `exec` through a running serve needs neither
 * (docs/performance.md, docs/decisions.md).
 *
 * Only the build uses this file: the Makefile points the packages' import paths at mcp.cjs and
 * postgres.cjs next to it, which call loadChunk when the module importing the package is first
 * evaluated (a dynamic import away from start-up). Run from the sources, the imports reach the
 * packages themselves. A chunk holds third-party code only: a second copy of one of our modules
 * (TpError, for one) would break `instanceof` between the bundle and the chunk.
 *
 * In the single executable, the chunks are assets of its blob (sea-config.json): `require` there
 * loads only built-in modules, so the chunk is compiled as a CommonJS module of its own. In the npm
 * package, they are files in dist/chunks/ beside the bundle.
 */
'use strict';
const Module = require('node:module');
const path = require('node:path');
const sea = require('node:sea');

/** @param {'mcp' | 'postgres'} name */
function loadChunk(name) {
  const file = path.join(__dirname, 'chunks', `${name}.cjs`);
  if (!sea.isSea()) return require(file);
  const chunk = new Module(file);
  chunk.filename = file;
  chunk._compile(sea.getAsset(`${name}.cjs`, 'utf8'), file);
  return chunk.exports;
}

module.exports = { loadChunk };
