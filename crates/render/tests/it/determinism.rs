//! Byte-identical output across runs and threads.

use occ_core::Mode;
use occ_render::{fit::fit_to_ratio, render_page, Align, Lang, RenderSpec};
use sha2_free::sha;

use crate::common::{en_text, tokenizer, zh_text};

mod sha2_free {
    /// FNV-1a 64 over the pixels: enough to compare renders without another dependency.
    pub fn sha(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    }
}

#[test]
fn rendering_twice_gives_identical_bytes() {
    let text = format!("{}\n\n{}", en_text(3000), zh_text(1500));
    for (mode, align) in [(Mode::Tiny, Align::Left), (Mode::Base, Align::Justify), (Mode::Gundam, Align::Center)] {
        let mut spec = RenderSpec::for_mode(mode, Lang::En).with_font_px(11.5);
        spec.align = align;
        let a = render_page(&text, &spec).unwrap();
        let b = render_page(&text, &spec).unwrap();
        assert_eq!(a.image.as_raw(), b.image.as_raw(), "{mode}");
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap(), "{mode}");
    }
}

#[test]
fn rendering_in_other_threads_gives_identical_bytes() {
    let text = en_text(5000);
    let spec = RenderSpec::for_mode(Mode::Small, Lang::En).with_font_px(9.25);
    let here = sha(render_page(&text, &spec).unwrap().image.as_raw());
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (text, spec) = (text.clone(), spec.clone());
            std::thread::spawn(move || sha(render_page(&text, &spec).unwrap().image.as_raw()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), here);
    }
}

#[test]
fn fitting_twice_gives_identical_pages() {
    let text = en_text(40_000);
    let spec = RenderSpec::for_mode(Mode::Tiny, Lang::En);
    let a = fit_to_ratio(&text, tokenizer(), Mode::Tiny, 12.0, &spec).unwrap();
    let b = fit_to_ratio(&text, tokenizer(), Mode::Tiny, 12.0, &spec).unwrap();
    assert_eq!(a, b);
}
