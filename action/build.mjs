// Bundles the action into action/dist, which is committed: the runner starts dist/index.js as it
// is, with no npm install. `--check` builds into a temporary folder instead and fails when the
// committed bundle differs (a change to action/src or a dependency without a rebuild).
//
//   node action/build.mjs                 build action/dist
//   node action/build.mjs --check [dir]   compare a fresh build with dir (default action/dist)
import { build } from 'esbuild';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const actionDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(actionDir);
const committed = join(actionDir, 'dist');

async function bundle(outdir) {
  mkdirSync(outdir, { recursive: true });
  await build({
    absWorkingDir: root,
    entryPoints: [join(actionDir, 'src', 'index.ts')],
    outfile: join(outdir, 'index.js'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    // the runner uses node24; node20 keeps the bundle runnable by the tests on the Node 20 here
    target: 'node20',
    // CommonJS dependencies (undici, tunnel) call require(); an ES module has none of its own
    banner: { js: "import { createRequire as __strataCreateRequire } from 'node:module';\nconst require = __strataCreateRequire(import.meta.url);" },
    legalComments: 'eof',
    logLevel: 'warning',
  });
  // the bundle is an ES module wherever the folder is copied, not only under this repository's package.json
  writeFileSync(join(outdir, 'package.json'), '{\n  "type": "module"\n}\n');
}

function files(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p).map((f) => join(name, f)));
    else out.push(name);
  }
  return out;
}

async function check(dir) {
  const fresh = mkdtempSync(join(tmpdir(), 'strata-action-dist-'));
  try {
    await bundle(fresh);
    const expected = files(fresh);
    const actual = files(dir);
    const problems = [];
    for (const f of expected) {
      if (!actual.includes(f)) problems.push(`missing ${f}`);
      else if (!readFileSync(join(fresh, f)).equals(readFileSync(join(dir, f)))) problems.push(`stale ${f}`);
    }
    for (const f of actual) if (!expected.includes(f)) problems.push(`unexpected ${f}`);
    if (problems.length > 0) {
      console.error(`${relative(process.cwd(), dir) || dir} differs from a fresh build (${problems.join(', ')}): run \`npm run build:action\` and commit action/dist`);
      process.exitCode = 1;
    } else {
      console.log(`${relative(process.cwd(), dir) || dir} matches a fresh build`);
    }
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args[0] === '--check') {
  await check(args[1] ?? committed);
} else if (args.length === 0) {
  rmSync(committed, { recursive: true, force: true });
  await bundle(committed);
} else {
  console.error('usage: node action/build.mjs [--check [dir]]');
  process.exitCode = 2;
}
