//! Statistics the benches report: nearest-rank percentiles, medians, percentages and
//! USD amounts; and a seeded random stream for reproducible workloads. Money stays
//! `rust_decimal`; floats are for latencies and sizes only.

use rust_decimal::Decimal;

/// The nearest-rank `q` quantile (0 < q ≤ 1) of `sorted`, or `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// [`percentile`] of microsecond latencies, 0 when there are none (as `RESULT` lines
/// print them).
pub fn percentile_us(sorted: &[u64], q: f64) -> u64 {
    percentile(sorted, q).unwrap_or(0)
}

/// `p50_us=… p90_us=… p99_us=… p999_us=… max_us=…` of sorted microsecond latencies.
pub fn percentiles_us(sorted: &[u64]) -> String {
    format!(
        "p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        percentile_us(sorted, 0.50),
        percentile_us(sorted, 0.90),
        percentile_us(sorted, 0.99),
        percentile_us(sorted, 0.999),
        sorted.last().copied().unwrap_or(0)
    )
}

/// Sorts `values` and returns their median (the mean of the middle two for an even
/// count), or `None` when there are none.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// `part` as a percentage of `whole`, to one decimal; `None` when `whole` is zero.
pub fn pct(part: Decimal, whole: Decimal) -> Option<Decimal> {
    (!whole.is_zero()).then(|| (part / whole * Decimal::ONE_HUNDRED).round_dp(1))
}

/// Atomic units of a 6-decimal token (USDC) as USD.
pub fn usd(atomic: u128) -> Decimal {
    Decimal::from_i128_with_scale(atomic as i128, 6)
}

/// A count of payments and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sum {
    pub n: u64,
    pub usd: Decimal,
}

impl Sum {
    /// Counts one payment of `atomic` USDC units.
    pub fn add(&mut self, atomic: u64) {
        self.n += 1;
        self.usd += usd(u128::from(atomic));
    }

    /// Both sums together.
    pub fn plus(self, other: Sum) -> Sum {
        Sum {
            n: self.n + other.n,
            usd: self.usd + other.usd,
        }
    }
}

impl std::fmt::Display for Sum {
    /// `N ($X.XX)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (${:.2})", self.n, self.usd)
    }
}

/// Microseconds as milliseconds with two decimals, or `-` when there is no value.
pub fn fmt_ms(micros: Option<f64>) -> String {
    micros.map_or_else(|| "-".into(), |us| format!("{:.2}", us / 1000.0))
}

/// Kilobytes as MiB with one decimal.
pub fn mib(kb: f64) -> String {
    format!("{:.1}", kb / 1024.0)
}

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, and the same everywhere, so a seed
/// always gives the same workload.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Stream `n` of `seed`: independent of the others, so item n of a seeded workload
    /// does not depend on how many there are.
    pub fn stream(seed: u64, n: u64) -> SplitMix64 {
        let mut rng = SplitMix64(seed ^ (n + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (modulo bias below 2^-50 for small ranges).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in `0..len`.
    pub fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64 - 1) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_and_medians() {
        let sorted = [1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&sorted, 0.5), Some(5));
        assert_eq!(percentile(&sorted, 0.99), Some(10));
        assert_eq!(percentile::<u64>(&[], 0.5), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 4.0]), Some(2.5));
        assert_eq!(
            pct(Decimal::ONE, Decimal::from(3)),
            Some(Decimal::new(333, 1))
        );
        assert_eq!(pct(Decimal::ONE, Decimal::ZERO), None);
        assert_eq!(usd(1_500_000).to_string(), "1.500000");
    }

    #[test]
    fn a_seed_always_gives_the_same_stream_and_streams_differ() {
        let draws = |n| {
            let mut rng = SplitMix64::stream(7, n);
            (0..8).map(|_| rng.range(2, 5)).collect::<Vec<_>>()
        };
        assert_eq!(draws(0), draws(0));
        assert_ne!(draws(0), draws(1));
        assert!(draws(3).iter().all(|v| (2..=5).contains(v)));
    }
}
