/**
 * The gmem command line. `gmem demo` runs a short program on the model; more commands are listed
 * by `gmem help`. Exit codes: 0 success, 1 a failed run, 2 bad usage or input.
 */
import { runDemo } from './demo.js';
import { parseDiffArgs, runDiffCommand } from './diff.js';
import { runSimCli } from './sim.js';

const USAGE = `usage: gmem <command> [options]

commands:
  demo            a short program on the model kernel (VM, guest_memfd, host and guest faults, punch)
  diff            differential test: random programs on the model and on /dev/kvm, compared
                  [--seed N] [--programs N] [--ops N] [--json]
  sim             the simulator: a scenario (built-in or YAML) run under each policy to compare,
                  side by side, e.g. gmem sim snp-lazy-accept --compare split=eager,lazy
                  [--json] [--html FILE] [--seed N] [--steps N]; gmem sim --help, --list
  help            this text
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  switch (cmd) {
    case 'demo':
      if (rest.length > 0) return usage(`demo takes no arguments, got '${rest.join(' ')}'`);
      return runDemo(out);
    case 'diff': {
      const a = parseDiffArgs(rest);
      if (typeof a === 'string') return usage(`diff: ${a}`);
      return runDiffCommand(a, out);
    }
    case 'sim':
      return runSimCli(rest);
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return 0;
    default:
      return usage(`unknown command '${cmd}'`);
  }
}

function usage(message: string): number {
  process.stderr.write(`gmem: ${message}\n${USAGE}`);
  return 2;
}
