#!/usr/bin/env node
// Entry point of the `oras-runtime` package bin: runs the bundled runtime program.
const path = require('path');
const fs = require('fs');

const bundle = path.join(__dirname, '..', 'runtime', 'build', 'oras-runtime.cjs');
if (!fs.existsSync(bundle)) {
  process.stderr.write(`oras-runtime: ${bundle} is missing. Build it with "npx projen compile" (or "npm run build") first.\n`);
  process.exit(1);
}
require(bundle).main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`oras-runtime: ${err && err.stack ? err.stack : err}\n`); process.exitCode = 1; },
);
