//! One module per subcommand; each owns its flags (`Args`) and its `run`.

pub mod bench;
pub mod compare;
pub mod decay;
pub mod inspect;
pub mod merge;
pub mod ocr;
pub mod render;
pub mod report;
pub mod scale;
pub mod score;
pub mod serve;
pub mod sweep;
pub mod train;

/// The default a flag's help states: the value after the last `else ` (or after `default: `) in
/// the `[default: …]` of flag `id` of the subcommand whose `Args` is `A`.
#[cfg(test)]
pub(crate) fn default_in_help<A: clap::Args>(id: &str) -> String {
    let cmd = A::augment_args(clap::Command::new("test"));
    let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap_or_else(|| panic!("no flag {id}"));
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    let bracket = help.split("[default: ").nth(1).unwrap_or_else(|| panic!("--{id}: no default in {help:?}"));
    let value = bracket.split(']').next().unwrap_or_default();
    value.rsplit("else ").next().unwrap_or(value).to_string()
}
