//! A 64-bit FNV-1a digest, printed as 16 hex digits: cheap, dependency
//! free, and enough to tell a torn or edited record from the one written,
//! or two sweeps' inputs apart. Not a cryptographic hash: it guards against
//! accidents (a killed process, a part of another run), not against an
//! adversary.

/// Incremental FNV-1a (64-bit).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The digest as 16 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The digest of `bytes` as 16 hex digits.
pub fn hex_digest(bytes: &[u8]) -> String {
    Fnv64::default().write(bytes).hex()
}

#[cfg(test)]
mod tests {
    use super::hex_digest;

    #[test]
    fn known_fnv1a_values() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(hex_digest(b""), "cbf29ce484222325");
        assert_eq!(hex_digest(b"a"), "af63dc4c8601ec8c");
        assert_eq!(hex_digest(b"foobar"), "85944171f73967e8");
    }
}
