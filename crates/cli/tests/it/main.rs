//! End-to-end tests of the `compress-bench` binary. One module per subcommand family.

mod baseline;
mod bench;
mod compare;
mod decay;
mod golden;
mod help;
mod inspect;
mod messages;
mod ocr;
mod ocr2;
mod reliability;
mod render;
mod scale;
mod score;
mod serve;
mod sweep;
mod train;
mod util;
