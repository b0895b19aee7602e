//! Test data shared by the tests: deterministic pseudo-random bytes.

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

/// Deterministic pseudo-random bytes (xorshift64): what a used disk looks like, unlike zeros.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
