//! `compress-bench inspect --tensors` end to end: the encoder's tensors against a checkpoint (a file or a
//! weights folder) and an index, read by the loader's own header reader, which refuses a truncated
//! file as loading would.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

const RIGHT: &str = "model.sam_model.blocks.0.norm1.weight"; // [768]
const WRONG: &str = "model.sam_model.blocks.0.norm1.bias"; // [768], written as [4]

fn inspect(extra: &[&str]) -> Output {
    let mut args = vec!["inspect", "--tensors"];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

/// A safetensors file of F32 zeros: `tensors` are `(name, shape)`; `data` bytes of tensor data are
/// written (all of them when `None`).
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>)], data: Option<usize>) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = 4 * shape.iter().product::<usize>();
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let header = serde_json::to_vec(&Value::Object(header)).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.resize(file.len() + data.unwrap_or(offset), 0);
    std::fs::write(path, file).unwrap();
}

/// The `tensors` message of a `--json` run.
fn tensors_message(o: &Output) -> Value {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["type"] == "tensors")
        .expect("a tensors message")["data"]
        .clone()
}

fn row<'a>(message: &'a Value, name: &str) -> &'a Value {
    message["tensors"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()
}

#[test]
fn the_expected_tensors_are_listed_without_a_checkpoint() {
    let o = inspect(&["--json"]);
    assert_ok(&o);
    let m = tensors_message(&o);
    assert_eq!(row(&m, RIGHT)["expected_shape"], serde_json::json!([768]));
    assert!(row(&m, RIGHT).get("checkpoint_shape").is_none());
    assert_eq!(m["shape_mismatches"], 0);
}

#[test]
fn a_checkpoint_file_or_folder_is_checked_by_the_loaders_reader() {
    let dir = scratch("inspect-tensors");
    let file = dir.join("model.safetensors");
    write_safetensors(&file, &[(RIGHT, vec![768]), (WRONG, vec![4])], None);
    let folder = dir.join("weights");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&file, folder.join("model-00001-of-000001.safetensors")).unwrap();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::write(folder.join(name), "{}").unwrap();
    }
    for checkpoint in [&file, &folder] {
        let o = inspect(&["--json", "--checkpoint", checkpoint.to_str().unwrap()]);
        assert!(!o.status.success(), "{}", checkpoint.display());
        let m = tensors_message(&o);
        let all = m["tensors"].as_array().unwrap().len();
        // The wrong one is a mismatch; the others are missing, not misshaped.
        let err = String::from_utf8_lossy(&o.stderr);
        let want = format!(
            "error: {} encoder tensors are missing from the checkpoint, 1 encoder tensors have a different shape",
            all - 2
        );
        assert!(err.contains(&want), "{err}");
        assert_eq!(m["shape_mismatches"], 1);
        let rows = m["tensors"].as_array().unwrap();
        assert_eq!(rows.iter().filter(|r| r.get("checkpoint_shape").is_none()).count(), all - 2);
        assert_eq!(row(&m, RIGHT)["checkpoint_shape"], serde_json::json!([768]));
        assert_eq!(row(&m, RIGHT)["checkpoint_dtype"], "F32");
        assert_eq!(row(&m, WRONG)["checkpoint_shape"], serde_json::json!([4]));
        let missing = "model.projector.layers.bias";
        assert!(
            row(&m, missing).get("checkpoint_shape").is_none() && row(&m, missing).get("checkpoint_dtype").is_none()
        );
    }
    let o = inspect(&["--checkpoint", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("{WRONG:<70} [768]  MISMATCH: checkpoint [4]")), "{stdout}");
    assert!(stdout.contains(&format!("{RIGHT:<70} [768]\n")), "{stdout}");
    assert!(stdout.contains("model.projector.layers.bias") && stdout.contains("[1280]  MISSING from checkpoint\n"));
    assert!(!stdout.contains("MISMATCH: checkpoint []"), "{stdout}");

    // Tensor data shorter than the header declares: refused with the file's name, as loading would.
    write_safetensors(&file, &[(RIGHT, vec![768])], Some(100));
    let o = inspect(&["--checkpoint", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("truncated") && stderr.contains("model.safetensors"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_missing_from_an_index_are_counted() {
    let dir = scratch("inspect-index");
    let index = dir.join("model.safetensors.index.json");
    std::fs::write(&index, serde_json::json!({"weight_map": {RIGHT: "model.safetensors"}}).to_string()).unwrap();
    let o = inspect(&["--json", "--index", index.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("encoder tensors are missing from the index"));
    let m = tensors_message(&o);
    assert_eq!(m["missing_from_index"], m["tensors"].as_array().unwrap().len() - 1);
    assert_eq!(row(&m, RIGHT)["in_index"], true);
    assert_eq!(row(&m, WRONG)["in_index"], false);
    let _ = std::fs::remove_dir_all(&dir);
}
