/** A small seeded random number generator (mulberry32), so randomised tests can be replayed. */

/** Returns a function yielding floats in [0, 1) determined by `seed`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** The seed from TEST_SEED, or `fallback`; printed so a failure can be replayed. */
export function testSeed(fallback: number): number {
  const given = Number(Deno.env.get("TEST_SEED"));
  return Number.isInteger(given) && given > 0 ? given : fallback;
}
