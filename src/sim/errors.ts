/**
 * Bad input to the simulator (scenario file, command line): one or more problems, each located
 * as `file:line: field: what is wrong`. The CLI prints them and exits with code 2, writing nothing.
 */

export interface InputProblem {
  /** The scenario file, or '<command line>'. */
  file: string;
  /** 1-based line in the file; absent for the command line or a missing field. */
  line?: number;
  /** The field, as a path: 'guest', 'workload.chunk', 'compare.split[1]', or an option: '--steps'. */
  field: string;
  message: string;
}

export function formatProblem(p: InputProblem): string {
  return `${p.file}${p.line !== undefined ? `:${p.line}` : ''}: ${p.field}: ${p.message}`;
}

export class SimInputError extends Error {
  readonly problems: readonly InputProblem[];
  constructor(problems: InputProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'SimInputError';
    this.problems = problems;
  }
}
