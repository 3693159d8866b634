// Child of process-last-resort.test.ts: the drover CLI itself (src/cli/main.ts, as bin/drover runs it,
// so its handlers are installed exactly as in production) plus a trigger on stdin: a line "reject"
// leaves a rejected promise unhandled, a line "throw" throws from a timer (an uncaught exception).
// argv: the drover arguments.
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
process.argv = [process.argv[0] as string, MAIN, ...process.argv.slice(2)];
let n = 0;
createInterface({ input: process.stdin }).on('line', (line) => {
  n++;
  if (line === 'reject') void Promise.reject(new Error(`injected rejection ${n}`));
  else if (line === 'throw') {
    setImmediate(() => {
      throw new Error(`injected exception ${n}`);
    });
  }
});
await import(MAIN);
