/**
 * Child process for test/kv/kv-kill.test.ts: opens the store at argv[2] with 'sync'
 * durability and puts keys "<round>-<i>" forever, writing "<i>\n" to stdout after each put
 * returns (the acknowledgement). The parent kills it with SIGKILL at a random moment.
 */
import { open } from '../helpers/kv-bytes.js';

const [file, round] = process.argv.slice(2);
const db = open(file, { size: 32 * 2 ** 20, durability: 'sync' });
process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  db.put(`${round}-${i}`, `value of ${round}-${i} `.repeat(1 + (i % 7)));
  if (i % 5 === 4)
    db.batch([
      { type: 'put', key: `${round}-b${i}`, value: 'x' },
      { type: 'del', key: `${round}-${i - 4}` },
      { type: 'put', key: `${round}-${i - 4}`, value: `again ${i}` },
    ]);
  process.stdout.write(`${i}\n`);
}
