/**
 * Process CPU time spent in each task's samples (warm-up included), beside tinybench's wall
 * time: on a machine shared with other work, wall time includes the time this process was
 * preempted; CPU time does not (it does include every thread of the process: lmdb's too).
 */
export class CpuTimer {
  private readonly tasks = new Map<string, { micros: number; calls: number }>();

  /** `fn` wrapped so that each call adds its CPU time to the task `name`. */
  timed(name: string, fn: () => void): () => void {
    const acc = { micros: 0, calls: 0 };
    this.tasks.set(name, acc);
    return () => {
      const c0 = process.cpuUsage();
      fn();
      const d = process.cpuUsage(c0);
      acc.micros += d.user + d.system;
      acc.calls++;
    };
  }

  /** Operations per CPU second of the task `name`, each call doing `perSample` operations. */
  opsPerCpuSec(name: string, perSample: number): number {
    const acc = this.tasks.get(name);
    if (acc === undefined) throw new Error(`bench task ${name} was never timed`);
    return (acc.calls * perSample * 1e6) / acc.micros;
  }
}
