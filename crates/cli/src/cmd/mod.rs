//! One module per subcommand; each owns its flags (`Args`) and its `run`.

pub mod bench;
pub mod compare;
pub mod decay;
pub mod inspect;
pub mod merge;
pub mod ocr;
pub mod render;
pub mod report;
pub mod score;
pub mod serve;
pub mod sweep;
pub mod train;
