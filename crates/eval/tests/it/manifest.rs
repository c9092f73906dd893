//! Manifests of the first version (committed under `tests/fixtures/manifests/`: a sweep's and a decay
//! run's, as the toolkit wrote them before the shapes were unified) read through the migration into
//! the one current shape.

use std::path::{Path, PathBuf};

use occ_eval::decay::output::{self, DecayState};
use occ_eval::manifest::{self, ManifestHead, RunKind, MANIFEST_VERSION};
use occ_eval::results::Manifest;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("occ-eval-manifest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn raw(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_first_version_sweep_manifest_reads_and_saves_in_the_current_shape() {
    let dir = fixture("sweep-v1");
    assert_eq!(raw(&dir)["manifest_version"], 1);
    assert!(raw(&dir).get("kind").is_none());
    let m = Manifest::load(&dir).unwrap();
    assert_eq!((m.run_id.as_str(), m.status.as_str(), m.n_samples_done), ("20261207T155825Z-1b4ef888", "complete", 1));
    assert_eq!(m.kind(), RunKind::Sweep);
    let head = ManifestHead::load(&dir).unwrap();
    assert_eq!(head, Manifest { manifest_version: MANIFEST_VERSION, ..m.clone() }.head());
    assert_eq!(head.engines[0].name, "fake-perfect");
    // Saved again: the current version, with its kind, and the same content.
    let out = scratch("sweep");
    m.save(&out).unwrap();
    let saved = raw(&out);
    assert_eq!((saved["manifest_version"].as_u64(), saved["kind"].as_str()), (Some(2), Some("sweep")));
    let back = Manifest::load(&out).unwrap();
    assert_eq!(back, Manifest { manifest_version: MANIFEST_VERSION, ..m });
    assert!(DecayState::load(&dir).unwrap_err().to_string().contains("not a decay run"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_first_version_decay_manifest_reads_with_the_shared_keys() {
    let dir = fixture("decay-v1");
    let old = raw(&dir);
    assert_eq!(old["schema_version"], 1);
    assert!(old.get("engine").is_some() && old.get("wall_s").is_some() && old.get("manifest_version").is_none());
    let state = DecayState::load(&dir).unwrap();
    assert_eq!((state.kind.as_str(), state.status().as_str()), ("decay", "complete"));
    assert_eq!(state.meta.engine.name, "fake-perfect");
    assert_eq!(state.meta.wall_s, old["wall_s"].as_f64().unwrap());
    assert_eq!(state.meta.command, old["command"].as_str().unwrap());
    assert_eq!(state.config().schedules.len(), 1);
    let head = ManifestHead::load(&dir).unwrap();
    assert_eq!(head, state.head);
    assert_eq!((head.kind, head.manifest_version), (RunKind::Decay, MANIFEST_VERSION));
    assert_eq!((head.wall_time_s, head.engines.len()), (state.meta.wall_s, 1));
    // The sweep's reader refuses it by kind, not by a missing field.
    let err = Manifest::load(&dir).unwrap_err().to_string();
    assert!(err.contains("a decay run"), "{err}");
    // Written again (a resumed run), it has the current shape: one name per key.
    let out = scratch("decay");
    output::write_state(&out, &state.config(), &state.meta, occ_eval::RunStatus::Interrupted, 3).unwrap();
    let new = raw(&out);
    for key in ["manifest_version", "kind", "status", "run_id", "created_utc", "engines", "tokenizer", "wall_time_s"] {
        assert!(new.get(key).is_some(), "{key} missing in {new}");
    }
    for key in ["schema_version", "engine", "wall_s"] {
        assert!(new.get(key).is_none(), "{key} still written");
    }
    let again = DecayState::load(&out).unwrap();
    assert_eq!((again.status().as_str(), again.reads_journaled), ("interrupted", Some(3)));
    assert_eq!(again.meta.command, state.meta.command);
    assert_eq!(manifest::read(&out).unwrap(), new, "the current shape migrates to itself");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_folder_without_a_manifest_is_not_a_decay_run_naming_the_file_once() {
    let dir = scratch("empty");
    let message = DecayState::load(&dir).unwrap_err().to_string();
    let file = dir.join("manifest.json").display().to_string();
    assert!(
        message.ends_with(&format!("not a decay run: {file}: No such file or directory (os error 2)")),
        "{message}"
    );
    assert_eq!(message.matches(&dir.display().to_string()).count(), 1, "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}
