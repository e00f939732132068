#!/usr/bin/env node
/**
 * The daxstore command. Exit codes: 0 ok, 1 problems found (check) or violations (crash),
 * 2 usage error, 3 I/O or store error, 4 a bug in daxstore. A user's mistake prints one
 * line, `daxstore: <CODE>: <message>`, never a stack trace.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { isDaxError } from '../errors.js';
import { EXIT_INTERNAL, EXIT_OK, EXIT_STORE, EXIT_USAGE, UsageError } from './output.js';
import { parseCount, parseDuration, parseList, parsePositive, parseSize } from './args.js';
import { runDump, runInfo } from './inspect.js';
import { runCheck } from './check.js';

type Run = () => number | Promise<number>;

/** The version in daxstore's package.json (src/cli in tests, dist/src/cli when built: found by walking up). */
function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'daxstore' && typeof pkg.version === 'string') return pkg.version;
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}
let exitCode = EXIT_OK;

/** Wraps an action so its return value becomes the exit code. */
function action<A extends unknown[]>(fn: (...args: A) => number | Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    exitCode = await fn(...args);
  };
}

export function buildProgram(): Command {
  const program = new Command('daxstore')
    .description('persistent-memory store: inspect, check, benchmark and crash-test daxstore files')
    .version(packageVersion())
    .showSuggestionAfterError(true)
    .enablePositionalOptions() // so `bench locks --duration` is the subcommand's option, not bench's
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, outputError: () => undefined });

  program
    .command('info')
    .description('superblock, sizes, device kind, flush method, blocks and key-value stats of a store')
    .argument('<path>', 'store file or device')
    .option('--json', 'machine-readable output')
    .action(action((path: string, o: { json?: boolean }) => runInfo(path, o)));

  program
    .command('dump')
    .description("list keys and values of a store in key order, decoded by the store's encodings")
    .argument('<path>', 'store file or device')
    .option('--prefix <key>', 'only keys starting with this (UTF-8 text or hex:<digits>)')
    .option('--limit <n>', 'at most n keys', parsePositive)
    .option('--raw', "keys and values as their stored bytes, not decoded by the store's encodings")
    .option('--json', 'machine-readable output')
    .action(
      action((path: string, o: { prefix?: string; limit?: number; json?: boolean; raw?: boolean }) => runDump(path, o)),
    );

  program
    .command('check')
    .description(
      'verify a store offline (superblock copies, owner table vs allocator, every record checksum); exit 1 when problems are found',
    )
    .argument('<path>', 'store file or device')
    .option(
      '--repair',
      'quarantine damaged records, free leaked blocks, rewrite a bad superblock copy; then check again',
    )
    .option('--json', 'machine-readable output')
    .action(action((path: string, o: { repair?: boolean; json?: boolean }) => runCheck(path, o)));

  addLaterCommands(program);
  return program;
}

/** An option with a parser and a default, its default shown in --help as a user would type it ('2s', '1,2', '256M'). */
function parsed<T>(flags: string, description: string, parse: (text: string) => T, value: T, shown: string): Option {
  return new Option(flags, description).argParser(parse).default(value, shown);
}

/** bench / crash / inject: loaded lazily so info/check start fast and lmdb is imported only when asked. */
function addLaterCommands(program: Command): void {
  const bench = program
    .command('bench')
    .enablePositionalOptions()
    .description(
      'YCSB A-F and fill/read/scan on worker threads sharing one store, optionally beside lmdb; `bench locks`: entry locks vs a page-lock baseline',
    )
    .option('--path <file>', 'store file (default: a fresh file in /dev/shm or the OS temp dir, removed after)')
    .addOption(parsed('--size <bytes>', 'store size', parseSize, 256 * 2 ** 20, '256M'))
    .addOption(new Option('--workload <list>', 'comma list of: a,b,c,d,e,f,fill,read,scan').default('a,b,c', 'a,b,c'))
    .addOption(parsed('--threads <list>', 'comma list of thread counts', parseList, [1, 2], '1,2'))
    .option('--value-size <bytes>', 'value size', parsePositive, 100)
    .option('--keys <n>', 'keys loaded before the run', parsePositive, 10_000)
    .addOption(
      parsed('--duration <time>', 'time per workload and thread count (e.g. 2s, 500ms)', parseDuration, 1000, '1s'),
    )
    .addOption(new Option('--distribution <d>', 'key distribution').choices(['zipfian', 'uniform']).default('zipfian'))
    .addOption(new Option('--compare <peer>', 'run the same workload on a peer store').choices(['lmdb']))
    .option('--out <dir>', 'write JSON and SVG charts here')
    .option('--seed <n>', 'seed of the key generators', parseCount)
    .option('--no-progress', 'no progress bar')
    .option('--json', 'machine-readable output')
    .action(action(async (o: Record<string, unknown>) => (await import('./bench.js')).runBench(o as never)));
  bench
    .command('locks')
    .description(
      'fault, truncate and memory-failure contention on one object: entry locks (DaxSpace) vs a per-4 KiB page-lock baseline, 4 KiB and 2 MiB entries',
    )
    .addOption(parsed('--size <bytes>', 'store size per run', parseSize, 256 * 2 ** 20, '256M'))
    .addOption(
      parsed(
        '--object-size <bytes>',
        'size of the contended object (a multiple of 8 MiB)',
        parseSize,
        16 * 2 ** 20,
        '16M',
      ),
    )
    .option('--threads <n>', 'worker threads; roles cycle fault, memory-failure, truncate, fault', parsePositive, 4)
    .addOption(parsed('--duration <time>', 'time per (entry size, path) run', parseDuration, 2000, '2s'))
    .addOption(
      parsed(
        '--truncate-interval <time>',
        'a truncating thread starts one truncate per interval (same pressure on both paths)',
        parseDuration,
        1,
        '1ms',
      ),
    )
    .option('--seed <n>', 'seed of the page and size choices', parseCount)
    .option('--out <dir>', 'write JSON and an SVG chart here')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'machine-readable output')
    .action(action(async (o: Record<string, unknown>) => (await import('./bench-locks.js')).runLocks(o as never)));

  program
    .command('crash')
    .description('crash-inject a workload on the simulated device at every fence; recover and check every image')
    .addOption(
      new Option('--workload <w>', 'operations to crash')
        .choices(['kv-mixed', 'kv-batch', 'kv-txn', 'kv-compact', 'kv-full', 'kv-grow'])
        .default('kv-mixed'),
    )
    .option('--ops <n>', 'operations in the workload', parsePositive, 30)
    .option('--images <n>', 'at most this many crash images per crash point', parsePositive, 16)
    .option('--seed <n>', 'seed (workload, random subsets, continuation)', parseCount)
    .option('--out <dir>', 'write the JSON report (and any violating image) here')
    .option('--self-test', 'run once per planted bug; every one must be reported')
    .option('--replay <image>', 'recover one saved image and check it')
    .option('--no-recovery-crash', 'do not also crash once inside each checked recovery')
    .option('--stop-at-first', 'stop at the first violation')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'machine-readable output')
    .action(action(async (o: Record<string, unknown>) => (await import('./crash.js')).runCrash(o as never)));

  const inject = program.command('inject').description("fault injection against a store file, for users' own tests");
  inject
    .command('poison')
    .description('durably mark the data block holding an offset (or a block number) bad: reads of it fail with EIO')
    .argument('<path>')
    .option('--block <n>', 'data block number', parseCount)
    .option('--offset <bytes>', 'device offset', parseCount)
    .option('--key <key>', 'the block holding the record of this key')
    .option('--json', 'machine-readable output')
    .action(
      action(async (path: string, o: Record<string, unknown>) =>
        (await import('./inject.js')).runPoison(path, o as never),
      ),
    );
  inject
    .command('enospc')
    .description('fill the store until allocation fails, leaving N blocks free (later writes get ENOSPC)')
    .argument('<path>')
    .option('--leave <n>', 'free blocks to leave', parseCount, 0)
    .option('--json', 'machine-readable output')
    .action(
      action(async (path: string, o: Record<string, unknown>) =>
        (await import('./inject.js')).runEnospc(path, o as never),
      ),
    );
  inject
    .command('eio')
    .description('flip bytes of a record in place so reading or recovering it reports a checksum error')
    .argument('<path>')
    .requiredOption('--key <key>', 'the key whose record to damage')
    .option('--json', 'machine-readable output')
    .action(
      action(async (path: string, o: Record<string, unknown>) =>
        (await import('./inject.js')).runEio(path, o as never),
      ),
    );
}

function report(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')
      return EXIT_OK;
    process.stderr.write(`daxstore: EUSAGE: ${e.message.replace(/^error: /, '')}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`daxstore: EUSAGE: ${e.message}\n`);
    return EXIT_USAGE;
  }
  if (isDaxError(e)) {
    process.stderr.write(`daxstore: ${e.message}\n`);
    return EXIT_STORE;
  }
  process.stderr.write(
    `daxstore: internal error (a bug in daxstore, please report it):\n${e instanceof Error ? e.stack : String(e)}\n`,
  );
  return EXIT_INTERNAL;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  // Subcommands write help to stdout; `daxstore` with no command prints help and is a usage error.
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return EXIT_USAGE;
  }
  exitCode = EXIT_OK;
  const run: Run = async () => {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  };
  try {
    return await run();
  } catch (e) {
    return report(e);
  }
}

process.exitCode = await main(process.argv.slice(2));
