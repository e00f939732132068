export async function runCrash(_o: unknown): Promise<number> {
  throw new Error('crash: not landed yet');
}
