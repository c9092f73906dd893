//! Shared helpers.

use std::sync::{Arc, OnceLock};

use occ_core::TextTokenizer;
use occ_memory::{ManualClock, MemoryConfig, OpticalMemory, Role, Round, ScheduleSpec};

/// The embedded tokenizer, loaded once per test binary.
pub fn tokenizer() -> TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| TextTokenizer::deepseek_ocr().expect("embedded tokenizer loads")).clone()
}

/// A memory on a manual clock at t = 0.
pub fn memory(schedule: &str) -> (OpticalMemory, ManualClock) {
    let spec: ScheduleSpec = schedule.parse().expect("valid schedule");
    let clock = ManualClock::at(0);
    let m = OpticalMemory::with_parts(MemoryConfig::with_schedule(spec), tokenizer(), Arc::new(clock.clone()))
        .expect("memory");
    (m, clock)
}

/// Short distinct rounds r0..r{n-1}, alternating user / assistant.
pub fn push_rounds(m: &mut OpticalMemory, n: usize) {
    for i in 0..n {
        let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
        m.push(Round::new(format!("r{i}"), role, round_text(i))).expect("push");
    }
}

pub fn round_text(i: usize) -> String {
    format!("Round {i}: the secret code of door number {i} is {}. Remember it for later.", 7000 + 37 * i)
}
