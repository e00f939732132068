export async function runBench(_o: unknown): Promise<number> {
  throw new Error('bench: not landed yet');
}
