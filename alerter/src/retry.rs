//! How a receiver's answer is judged, and the backoff between attempts.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

/// What to do after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// Network error, timeout, 408, 429 or 5xx: try again after a backoff.
    Retry,
    /// Any other 4xx (or 1xx/3xx): the receiver refuses this notification; log, count, drop.
    Rejected,
}

/// The verdict on an HTTP status (`None`: no answer: connection refused, timeout).
pub fn judge(status: Option<u16>) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(200..=299) => Verdict::Delivered,
        Some(408 | 429) | Some(500..=599) => Verdict::Retry,
        Some(_) => Verdict::Rejected,
    }
}

/// Delays between attempts: exponential from `initial` up to `max`, with full jitter, without
/// end (a receiver that is down delays notifications, loses none).
pub fn backoff(initial: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_judged_as_documented() {
        assert_eq!(judge(Some(200)), Verdict::Delivered);
        assert_eq!(judge(Some(202)), Verdict::Delivered);
        assert_eq!(judge(None), Verdict::Retry);
        assert_eq!(judge(Some(503)), Verdict::Retry);
        assert_eq!(judge(Some(429)), Verdict::Retry);
        assert_eq!(judge(Some(408)), Verdict::Retry);
        assert_eq!(judge(Some(400)), Verdict::Rejected);
        assert_eq!(judge(Some(404)), Verdict::Rejected);
        assert_eq!(judge(Some(302)), Verdict::Rejected);
    }

    #[test]
    fn backoff_grows_stays_bounded_and_never_ends() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let delays: Vec<Duration> = backoff(initial, max).take(40).collect();
        assert_eq!(delays.len(), 40);
        // jitter adds up to one more delay: each within [d, 2d] of the exponential d
        for (i, d) in delays.iter().enumerate() {
            let base = (initial * 2u32.pow(i.min(10) as u32)).min(max);
            assert!(*d >= base && *d <= base * 2, "attempt {i}: {d:?} vs {base:?}");
        }
        assert!(delays[39] >= max);
    }
}
