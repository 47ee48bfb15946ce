// Runs the browser tests (node:test, one file at a time) against
// target/debug/floorbell in Debian's headless Chromium. Exit code: the
// runner's. A watchdog ends the run after 15 minutes, whatever happens.
//   node tests/browser/run.mjs                      # temporary screenshots
//   FLOORBELL_SCREENSHOTS=docs node tests/browser/run.mjs   # also into docs/
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const files = [path.join(here, 'pages.test.mjs')];
const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  cwd: here,
});
const watchdog = setTimeout(() => {
  console.error('browser tests: over 15 minutes, stopping');
  child.kill('SIGKILL');
}, 15 * 60 * 1000);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  clearTimeout(watchdog);
  process.exit(code === null ? 1 : code);
});
