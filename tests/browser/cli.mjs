// Command-line handling shared by the browser drivers: parse the options, insist
// on the required ones, and exit 2 with `NAME: ...` on stderr when they are wrong.
// Owns no browser and no network.

import { parseArgs } from 'node:util';

/** Prints `script: message` on stderr and exits with `code`. */
export function die(script, code, message) {
  process.stderr.write(`${script}: ${message}\n`);
  process.exit(code);
}

/**
 * Parses process.argv with `options` (node:util parseArgs shape); every name in
 * `required` must be given; `--timeout-ms` must be a positive integer.
 * Returns [args, timeoutMs].
 */
export function parseCli(script, options, required) {
  let args;
  try {
    ({ values: args } = parseArgs({ options }));
  } catch (e) {
    die(script, 2, e.message);
  }
  for (const name of required) {
    if (!args[name]) die(script, 2, `--${name} is required (see the usage at the top of ${script})`);
  }
  const timeout = Number.parseInt(args['timeout-ms'], 10);
  if (!(timeout > 0)) die(script, 2, `--timeout-ms ${args['timeout-ms']} is not a positive number`);
  return [args, timeout];
}
