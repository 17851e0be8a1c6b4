/** Shared by the simulator tests: run `gmem sim` in-process and capture what it prints. */
import { runSimCli } from '../../src/cli/sim.js';

export async function sim(args: string[], cwd?: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runSimCli(args, {
    stdout: { write: (s: string) => { out += s; } },
    stderr: { write: (s: string) => { err += s; }, isTTY: false },
    ...(cwd !== undefined ? { cwd } : {}),
  });
  return { code, out, err };
}
