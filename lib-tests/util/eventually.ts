/** Polls `read` until it gives `expected` or `timeoutMs` passed; returns the last value read. */
export async function eventually<T>(read: () => Promise<T>, expected: T, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (value !== expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    value = await read();
  }
  return value;
}
