//! Generated run ids.

use std::sync::atomic::{AtomicU64, Ordering};

/// A new run id: 7 base62 characters of the wall-clock millisecond, then 9
/// random ones (16 in all). Ids sort by creation time, so a store's indexes
/// keyed by run id grow at one end instead of at random places (which is
/// what makes SQLite's group commits cheap).
pub(super) fn generate_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    /// `n` in `width` base62 digits, most significant first (so the text
    /// sorts like the number; higher digits of a wider `n` are dropped).
    fn push_base62(id: &mut String, mut n: u64, width: usize) {
        let mut digits = [b'0'; 11];
        for digit in digits[..width].iter_mut().rev() {
            *digit = ALPHABET[(n % 62) as usize];
            n /= 62;
        }
        id.extend(digits[..width].iter().map(|&b| char::from(b)));
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut id = String::with_capacity(16);
    push_base62(&mut id, millis, 7);
    push_base62(&mut id, hasher.finish(), 9);
    id
}
