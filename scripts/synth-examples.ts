// Synthesizes every examples/<name>/main.ts into dist/ (or the directory given
// as the first argument). Each example writes one <chart>.yaml file.
import { spawnSync } from 'child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'fs';
import { join, resolve } from 'path';

const root = resolve(__dirname, '..');

/** The example entry points, sorted. */
export function exampleEntries(): string[] {
  const dir = join(root, 'examples');
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'main.ts')))
    .map((d) => join(dir, d.name, 'main.ts'))
    .sort();
}

/** Synthesizes every example into `outdir`, replacing the YAML files there. */
export function synthExamples(outdir: string): void {
  mkdirSync(outdir, { recursive: true });
  for (const file of readdirSync(outdir)) {
    if (file.endsWith('.yaml')) rmSync(join(outdir, file));
  }
  for (const entry of exampleEntries()) {
    const result = spawnSync(process.execPath, [
      require.resolve('ts-node/dist/bin'), '--project', join(root, 'scripts', 'tsconfig.json'), entry,
    ], { cwd: root, env: { ...process.env, CDK8S_OUTDIR: outdir }, stdio: 'inherit' });
    if (result.status !== 0) throw new Error(`synthesizing ${entry} failed (exit ${result.status})`);
  }
}

if (require.main === module) {
  const outdir = resolve(process.argv[2] ?? join(root, 'dist'));
  synthExamples(outdir);
  console.log(`synthesized ${exampleEntries().length} example(s) into ${outdir}: ${readdirSync(outdir).filter((f) => f.endsWith('.yaml')).join(', ')}`);
}
