//! How long rendering takes for a few typical messages (a figure to read, not a test):
//! `cargo run --release -p weft-render --example render_timing`.

use std::time::Instant;

use weft_render::render_markdown;

const TYPICAL: &str = "Hey @alice, the fix for #123 is in weft-org/weft#456 :tada: \
    see https://example.com/pr/456 and run `cargo test -p weft-render`.\n\
    It **should** also handle $x^2$ now.";

fn main() {
    // Warm up (builds the shared options and sanitiser).
    for _ in 0..1_000 {
        std::hint::black_box(render_markdown(std::hint::black_box(TYPICAL)));
    }
    let plain = "Good morning everyone! Has anybody tried the new release yet? \
        I am seeing a few warnings when I build, but nothing that breaks.";
    let no_maths = TYPICAL.replace("$x^2$", "x squared");
    for (name, input) in [
        ("typical", TYPICAL),
        ("typical without maths", no_maths.as_str()),
        ("plain", plain),
    ] {
        let rounds = 20_000u32;
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(render_markdown(std::hint::black_box(input)));
        }
        let per = start.elapsed() / rounds;
        println!("{name} message ({} bytes): {per:?} per render", input.len());
    }
}
