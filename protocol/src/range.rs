//! The binary range coder of snapshot bodies: LZMA's, with adaptive probabilities.
//!
//! Every decision of a body (is this entity touched, is this axis zero, one bit of a
//! magnitude's length) is coded against a probability that adapts as the body is coded,
//! so a decision that is nearly always the same costs a small fraction of a bit. Both
//! sides start every body from the same even probabilities: a body never depends on
//! another body's statistics, so a lost datagram costs nothing but itself.
//!
//! The coder is LZMA's (Igor Pavlov's, public domain), byte for byte: 11-bit
//! probabilities, a 32-bit range, adaptation by a shift of [`ADAPT_SHIFT`], carries
//! propagated through a cached byte. Two changes make it fit a datagram: the leading zero
//! byte LZMA's encoder always emits is not written, and trailing zero bytes of the flush
//! are cut (the decoder reads bytes past the end as zeros, so they need not be sent).
//!
//! Written here rather than taken from a crate: the entropy-coding crates on crates.io
//! (`constriction`, `arcode`) code whole symbols against static or hand-fed models, and
//! LZMA's crates keep their range coder private. What a body needs is cheap adaptive
//! binary decisions, identical in every implementation — about a hundred lines, specified
//! in `docs/protocol.md` and decoded by the foreign test decoder from that text alone.

use crate::bits::DeltaError;

/// Bits of a probability: a probability `p` is the chance of a `0`, out of `1 << 11`.
pub const PROB_BITS: u32 = 11;
/// A fresh probability: one half.
pub const PROB_INIT: u16 = 1 << (PROB_BITS - 1);
/// How fast probabilities adapt: each decision moves `p` by `1/16` of its distance.
pub const ADAPT_SHIFT: u32 = 4;
const TOP: u32 = 1 << 24;

/// One side of the coder: the encoder takes each decision and returns it, the decoder
/// ignores what it is given and returns what it reads. Field coding is written once,
/// against this trait, for both directions.
pub trait Coder {
    /// Codes one decision against `p`, adapting it.
    fn bit(&mut self, p: &mut u16, bit: bool) -> bool;
    /// Codes the low `n` bits of `value` (n ≤ 32) at even odds, most significant first.
    fn direct(&mut self, n: u32, value: u32) -> u32;
}

fn adapt(p: &mut u16, bit: bool) {
    if bit {
        *p -= *p >> ADAPT_SHIFT;
    } else {
        *p += ((1 << PROB_BITS) - *p) >> ADAPT_SHIFT;
    }
}

/// The encoder.
#[derive(Debug)]
pub struct Encoder {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    /// LZMA's first output byte is always zero; it is not written.
    first: bool,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Encoder {
    /// An encoder whose output starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            low: 0,
            range: u32::MAX,
            cache: 0,
            cache_size: 1,
            first: true,
            out: Vec::with_capacity(bytes),
        }
    }

    fn shift_low(&mut self) {
        if (self.low as u32) < 0xff00_0000 || (self.low >> 32) != 0 {
            let carry = (self.low >> 32) as u8;
            let mut byte = self.cache;
            loop {
                if self.first {
                    self.first = false;
                } else {
                    self.out.push(byte.wrapping_add(carry));
                }
                byte = 0xff;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00ff_ffff) << 8;
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Flushes and returns the bytes, up to [`MAX_CUT_ZEROS`] trailing zero bytes cut.
    pub fn finish(mut self) -> Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        for _ in 0..MAX_CUT_ZEROS {
            if self.out.last() != Some(&0) {
                break;
            }
            self.out.pop();
        }
        self.out
    }
}

impl Coder for Encoder {
    fn bit(&mut self, p: &mut u16, bit: bool) -> bool {
        let bound = (self.range >> PROB_BITS) * u32::from(*p);
        if bit {
            self.low += u64::from(bound);
            self.range -= bound;
        } else {
            self.range = bound;
        }
        adapt(p, bit);
        self.normalize();
        bit
    }

    fn direct(&mut self, n: u32, value: u32) -> u32 {
        for i in (0..n.min(32)).rev() {
            self.range >>= 1;
            // Branch-free: the bits of a value are as good as random to the predictor.
            let bit = (value >> i) & 1;
            self.low += u64::from(self.range & bit.wrapping_neg());
            self.normalize();
        }
        value & mask(n)
    }
}

fn mask(n: u32) -> u32 {
    if n >= 32 { u32::MAX } else { (1 << n) - 1 }
}

/// Trailing zero bytes the encoder cuts: the decoder reads exactly the bytes the encoder
/// wrote, so it reads at most this many past the end of a body. A body may end in more
/// zeros than that (a run of zero direct bits): those are sent.
pub const MAX_CUT_ZEROS: usize = 4;

/// Bytes a decoder may read past the end of a body before the body is called truncated.
const MAX_READ_PAST_END: usize = MAX_CUT_ZEROS;

/// The decoder. Reads past the end of its input as zero bytes and counts them; a body
/// whose decoding read more than the flush's worth past its end is truncated
/// ([`Decoder::finish`]).
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
    at: usize,
    range: u32,
    code: u32,
}

impl<'a> Decoder<'a> {
    /// A decoder over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        let mut d = Self {
            input,
            at: 0,
            range: u32::MAX,
            code: 0,
        };
        for _ in 0..4 {
            d.code = (d.code << 8) | u32::from(d.next_byte());
        }
        d
    }

    fn next_byte(&mut self) -> u8 {
        let byte = self.input.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        byte
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(self.next_byte());
        }
    }

    /// Whether the decoding so far stayed within the body (and its cut flush).
    pub fn within(&self) -> bool {
        self.at <= self.input.len() + MAX_READ_PAST_END
    }

    /// Ends decoding: [`DeltaError::Truncated`] if it read beyond the body and its flush.
    pub fn finish(self) -> Result<(), DeltaError> {
        if self.within() {
            Ok(())
        } else {
            Err(DeltaError::Truncated)
        }
    }
}

impl Coder for Decoder<'_> {
    fn bit(&mut self, p: &mut u16, _: bool) -> bool {
        let bound = (self.range >> PROB_BITS) * u32::from(*p);
        // An invalid stream (code ≥ range) decodes as some sequence of ones: garbage that
        // the body's checks reject, never a panic.
        let bit = self.code >= bound;
        if bit {
            self.code = self.code.wrapping_sub(bound);
            self.range -= bound;
        } else {
            self.range = bound;
        }
        adapt(p, bit);
        self.normalize();
        bit
    }

    fn direct(&mut self, n: u32, _: u32) -> u32 {
        let mut value = 0u32;
        for _ in 0..n.min(32) {
            self.range >>= 1;
            // LZMA's branch-free form: `code − range` wraps (top bit set) exactly when
            // `code < range`, given `code < 2 · range`, which a valid stream keeps; on an
            // invalid one it decodes garbage, never panics.
            self.code = self.code.wrapping_sub(self.range);
            let zero = 0u32.wrapping_sub(self.code >> 31);
            self.code = self.code.wrapping_add(self.range & zero);
            value = (value << 1) | (zero.wrapping_add(1));
            self.normalize();
        }
        value
    }
}

/// Adaptive codes of integers: a sign-and-magnitude binarization whose every decision
/// has its own probability. `probs` holds [`NUMBER_PROBS`] probabilities.
///
/// A magnitude `m` of bit length `L` (0 for zero) is coded as: `m ≠ 0`?; then, for a
/// signed number, its sign; then `L − 1` in unary (`1` for each step up from 1, a `0` to
/// stop, no stop at [`MAX_NUMBER_BITS`]); then the `L − 1` bits below the leading one,
/// the first [`MODELED_MANTISSA`] of them against probabilities of their own (per `L`
/// and position), the rest direct.
pub const NUMBER_PROBS: usize = 2 + MAX_NUMBER_BITS as usize * (1 + MODELED_MANTISSA);
/// Longest magnitude a number code carries, in bits.
pub const MAX_NUMBER_BITS: u32 = 33;
/// Bits below the leading one coded against probabilities.
pub const MODELED_MANTISSA: usize = 2;

const NONZERO: usize = 0;
const SIGN: usize = 1;
const LENGTH: usize = 2;
const MANTISSA: usize = LENGTH + MAX_NUMBER_BITS as usize;

/// Codes a signed number (|v| < 2^33) and returns it (the decoded one on decoding). Also
/// returns its magnitude's bit length, which callers use to pick the next number's
/// probabilities.
pub fn signed<C: Coder>(c: &mut C, probs: &mut [u16], v: i64) -> (i64, u32) {
    number(c, probs, v, true)
}

/// Codes an unsigned number (< 2^33).
pub fn unsigned<C: Coder>(c: &mut C, probs: &mut [u16], v: u64) -> (u64, u32) {
    let (v, bits) = number(c, probs, v as i64, false);
    (v as u64, bits)
}

fn number<C: Coder>(c: &mut C, probs: &mut [u16], v: i64, with_sign: bool) -> (i64, u32) {
    debug_assert_eq!(probs.len(), NUMBER_PROBS);
    let magnitude = v.unsigned_abs().min((1 << MAX_NUMBER_BITS) - 1);
    if !c.bit(&mut probs[NONZERO], magnitude != 0) {
        return (0, 0);
    }
    let negative = with_sign && c.bit(&mut probs[SIGN], v < 0);
    let length = u64::BITS - magnitude.leading_zeros(); // 1..=33 on encoding
    let mut decoded_length = 1u32;
    while decoded_length < MAX_NUMBER_BITS {
        let p = &mut probs[LENGTH + decoded_length as usize - 1];
        if !c.bit(p, decoded_length < length) {
            break;
        }
        decoded_length += 1;
    }
    let l = decoded_length;
    let mut m = 1u64;
    // The bits right below the leading one against their own probabilities, then the
    // rest at even odds in one run (the same bits, most significant first).
    let modeled = (l - 1).min(MODELED_MANTISSA as u32);
    for rank in 0..modeled {
        let bit = (magnitude >> (l - 2 - rank)) & 1 != 0;
        let p = &mut probs[MANTISSA + (l as usize - 1) * MODELED_MANTISSA + rank as usize];
        m = (m << 1) | u64::from(c.bit(p, bit));
    }
    let rest = l - 1 - modeled; // at most 30
    if rest > 0 {
        let low = (magnitude & ((1 << rest) - 1)) as u32;
        m = (m << rest) | u64::from(c.direct(rest, low));
    }
    let m = m as i64;
    (if negative { -m } else { m }, l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn decisions_and_numbers_round_trip_and_skewed_ones_cost_little() {
        let mut rng = SplitMix64::new(5);
        let values: Vec<i64> = (0..4000)
            .map(|i| match i % 4 {
                0 => 0,
                1 => (rng.next_u64() % 64) as i64 - 32,
                2 => (rng.next_u64() % (1 << 33)) as i64 - (1 << 32),
                _ => -((rng.next_u64() % 300) as i64),
            })
            .collect();
        let skewed: Vec<bool> = (0..4000)
            .map(|_| rng.next_u64().is_multiple_of(50))
            .collect();
        let mut e = Encoder::default();
        let (mut p, mut probs) = (PROB_INIT, vec![PROB_INIT; NUMBER_PROBS]);
        for (v, &b) in values.iter().zip(&skewed) {
            assert_eq!(signed(&mut e, &mut probs, *v).0, *v);
            e.bit(&mut p, b);
            e.direct(7, (*v as u32) & 0x7f);
        }
        let bytes = e.finish();
        let mut d = Decoder::new(&bytes);
        let (mut p, mut probs) = (PROB_INIT, vec![PROB_INIT; NUMBER_PROBS]);
        for (v, &b) in values.iter().zip(&skewed) {
            assert_eq!(signed(&mut d, &mut probs, 0).0, *v);
            assert_eq!(d.bit(&mut p, false), b);
            assert_eq!(d.direct(7, 0), (*v as u32) & 0x7f);
        }
        d.finish().expect("within the body");

        // 4,000 decisions at 2 % cost well under a bit each.
        let mut e = Encoder::default();
        let mut p = PROB_INIT;
        for &b in &skewed {
            e.bit(&mut p, b);
        }
        let bytes = e.finish().len();
        assert!(
            bytes * 8 < 4000 / 4,
            "{bytes} bytes for 4,000 skewed decisions"
        );
    }

    #[test]
    fn a_body_ending_in_zero_bytes_is_not_cut_short() {
        let mut e = Encoder::default();
        let mut p = PROB_INIT;
        e.bit(&mut p, true);
        for _ in 0..4 {
            e.direct(32, 0);
        }
        let bytes = e.finish();
        assert!(bytes.len() >= 16, "{} bytes for 129 bits", bytes.len());
        let mut d = Decoder::new(&bytes);
        let mut p = PROB_INIT;
        assert!(d.bit(&mut p, false));
        for _ in 0..4 {
            assert_eq!(d.direct(32, 1), 0);
        }
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn an_empty_body_is_no_bytes_and_garbage_decodes_without_panicking() {
        assert!(Encoder::default().finish().is_empty());
        let mut d = Decoder::new(&[]);
        let mut p = PROB_INIT;
        assert!(
            !d.bit(&mut p, true),
            "zeros decode as the likelier decision"
        );
        for garbage in [&[0xffu8; 3][..], &[0xff; 40], &[0x80, 0, 0xff, 1, 2]] {
            let mut d = Decoder::new(garbage);
            let mut probs = vec![PROB_INIT; NUMBER_PROBS];
            for _ in 0..100 {
                let (v, bits) = signed(&mut d, &mut probs, 0);
                assert!(bits <= MAX_NUMBER_BITS && v.unsigned_abs() < 1 << MAX_NUMBER_BITS);
                d.direct(32, 0);
            }
            assert_eq!(d.finish(), Err(DeltaError::Truncated));
        }
    }
}
