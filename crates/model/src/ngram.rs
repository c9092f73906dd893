//! Repetition blockers of DeepSeek-OCR generation (docs/MODEL.md §10.2, §10.3).
//!
//! - [`NgramBlocker`]: the DeepSeek variant (`NoRepeatNGramLogitsProcessor` of the official vLLM
//!   runner): looks only at the **generated** tokens, only at n-grams that start inside the last
//!   `window_size` of them, and never bans whitelisted ids (`<td>`, `</td>`).
//! - [`no_repeat_ngram_banned`]: transformers' `no_repeat_ngram_size` over prompt + generated tokens,
//!   no window, no whitelist (the HF `infer` path).

/// `<td>` and `</td>`, which tables legitimately repeat.
pub const TABLE_CELL_IDS: [u32; 2] = [128_821, 128_822];

/// The DeepSeek n-gram blocker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NgramBlocker {
    pub ngram_size: usize,
    pub window_size: usize,
    pub whitelist: Vec<u32>,
}

impl NgramBlocker {
    /// ngram 30 / window 90 / `<td>`, `</td>`: the official vLLM image runner
    /// (`DeepSeek-OCR-vllm/run_dpsk_ocr_image.py`) and upstream vLLM's README (docs/MODEL.md §10.1).
    pub fn deepseek_default() -> NgramBlocker {
        NgramBlocker { ngram_size: 30, window_size: 90, whitelist: TABLE_CELL_IDS.to_vec() }
    }

    /// ngram 20 / window 50: the official PDF runner.
    pub fn deepseek_pdf() -> NgramBlocker {
        NgramBlocker { ngram_size: 20, window_size: 50, whitelist: TABLE_CELL_IDS.to_vec() }
    }

    /// Token ids banned as the next token after `generated` (prompt tokens excluded), sorted and
    /// without duplicates.
    pub fn banned(&self, generated: &[u32]) -> Vec<u32> {
        let n = self.ngram_size;
        let len = generated.len();
        if n == 0 || len < n {
            return Vec::new();
        }
        let prefix = &generated[len - (n - 1)..];
        let start = len.saturating_sub(self.window_size);
        let mut banned: Vec<u32> = (start..len + 1 - n)
            .filter(|&i| &generated[i..i + n - 1] == prefix)
            .map(|i| generated[i + n - 1])
            .filter(|id| !self.whitelist.contains(id))
            .collect();
        banned.sort_unstable();
        banned.dedup();
        banned
    }
}

/// transformers' `no_repeat_ngram_size = n`: ids that would complete an n-gram already present in
/// `ids` (prompt and generated tokens), sorted and without duplicates.
pub fn no_repeat_ngram_banned(n: usize, ids: &[u32]) -> Vec<u32> {
    let len = ids.len();
    if n == 0 || len + 1 < n {
        return Vec::new();
    }
    let prefix = &ids[len + 1 - n..];
    let mut banned: Vec<u32> =
        (0..(len + 1).saturating_sub(n)).filter(|&i| &ids[i..i + n - 1] == prefix).map(|i| ids[i + n - 1]).collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocker(n: usize, w: usize) -> NgramBlocker {
        NgramBlocker { ngram_size: n, window_size: w, whitelist: TABLE_CELL_IDS.to_vec() }
    }

    #[test]
    fn deepseek_blocker_hand_cases() {
        // too short: fewer than n generated tokens
        assert!(blocker(3, 90).banned(&[5, 6]).is_empty());
        // 5 6 7 5 6 → prefix [5, 6] seen at 0 → ban 7
        assert_eq!(blocker(3, 90).banned(&[5, 6, 7, 5, 6]), [7]);
        // two earlier continuations
        assert_eq!(blocker(2, 90).banned(&[4, 1, 4, 2, 4]), [1, 2]);
        // whitelisted ids are never banned
        assert_eq!(blocker(2, 90).banned(&[4, 128_821, 4, 2, 4]), [2]);
        // window: n-grams must start inside the last W tokens
        let ids = [5, 6, 7, 1, 2, 3, 5, 6];
        assert_eq!(blocker(3, 8).banned(&ids), [7]);
        assert!(blocker(3, 7).banned(&ids).is_empty(), "start 0 is outside a window of 7");
        // the n-gram ending at the current position is not counted
        assert!(blocker(2, 90).banned(&[9, 8, 7]).is_empty());
    }

    #[test]
    fn hf_no_repeat_hand_cases() {
        assert_eq!(no_repeat_ngram_banned(2, &[1, 2, 3, 1]), [2]);
        assert_eq!(no_repeat_ngram_banned(3, &[1, 2, 3, 1, 2]), [3]);
        assert!(no_repeat_ngram_banned(3, &[1, 2]).is_empty());
        assert!(no_repeat_ngram_banned(3, &[1, 2, 3]).is_empty());
        // prompt runs count: a run of image slots bans continuing it once n-1 slots are repeated
        assert_eq!(no_repeat_ngram_banned(2, &[7, 7]), [7]);
        // n = 1 bans every id seen
        assert_eq!(no_repeat_ngram_banned(1, &[3, 1, 3]), [1, 3]);
    }

    /// Property: after appending any id the blocker did not ban, the last n-gram within the window
    /// has no earlier occurrence that starts inside the window (unless its last id is whitelisted).
    #[test]
    fn deepseek_blocker_prevents_repeats_property() {
        let b = blocker(3, 12);
        let mut state = 0x1234_5678u64;
        let mut ids: Vec<u32> = Vec::new();
        for _ in 0..400 {
            state = crate::synth::splitmix64_at(state, 0);
            let banned = b.banned(&ids);
            let mut next = (state % 4) as u32;
            while banned.contains(&next) {
                next = (next + 1) % 8;
            }
            ids.push(next);
            let len = ids.len();
            if len > b.ngram_size {
                let last = &ids[len - 3..];
                let start = (len - 1).saturating_sub(b.window_size);
                for i in start..len - 3 {
                    assert_ne!(&ids[i..i + 3], last, "repeat at {i} in {ids:?}");
                }
            }
        }
    }
}
