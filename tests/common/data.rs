//! Test data shared by the content tests.

/// Deterministic pseudo-random bytes (xorshift32): incompressible, so sizes and transfer
/// counts mean something.
pub fn random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
