//! Property tests of the safetensors header reader: arbitrary bytes, valid files,
//! and valid files truncated, with a wrong header length, or with a mutated header (huge or overflowing
//! shapes, offsets out of range, unknown dtypes, junk JSON) are read or refused with an error that
//! names the file, never a panic or an allocation larger than the file. Budget and guarantees:
//! docs/RELIABILITY.md, "Fuzzing and property tests".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use occ_model::load::{from_safetensors, read_safetensors_header, LoadError};
use proptest::prelude::*;

const DTYPES: [(&str, usize); 14] = [
    ("BOOL", 1),
    ("U8", 1),
    ("I8", 1),
    ("F8_E4M3", 1),
    ("F8_E5M2", 1),
    ("BF16", 2),
    ("F16", 2),
    ("I16", 2),
    ("U16", 2),
    ("F32", 4),
    ("I32", 4),
    ("U32", 4),
    ("F64", 8),
    ("I64", 8),
];

/// A tensor of a generated file: name, dtype, shape.
type Tensor = (String, usize, Vec<u64>);

fn tensors() -> impl Strategy<Value = Vec<Tensor>> {
    let name = "[a-z]{1,6}(\\.[a-z0-9_]{1,6}){0,3}";
    prop::collection::btree_map(name, (0..DTYPES.len(), prop::collection::vec(0u64..6, 0..4)), 0..6)
        .prop_map(|m| m.into_iter().map(|(n, (d, s))| (n, d, s)).collect())
}

/// A valid safetensors file of `tensors` (contiguous data in order, optional `__metadata__`).
fn file_of(tensors: &[Tensor], metadata: bool) -> (serde_json::Map<String, serde_json::Value>, usize) {
    let mut header = serde_json::Map::new();
    if metadata {
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    }
    let mut offset = 0usize;
    for (name, d, shape) in tensors {
        let bytes = shape.iter().product::<u64>() as usize * DTYPES[*d].1;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": DTYPES[*d].0, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    (header, offset)
}

fn bytes_of(header: &serde_json::Map<String, serde_json::Value>, data: usize) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap();
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(&json);
    v.extend((0..data).map(|i| i as u8));
    v
}

/// A file in a folder of its own for this test process, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("occ-props-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{tag}-{}.safetensors", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// The error and all its causes, as the CLI prints them.
fn chain(e: &LoadError) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What an accepted header promises: every tensor's byte range holds exactly its values and lies in
/// the file (checked in u128, so no overflow can hide a mismatch).
fn accepted_problems(path: &Path, bytes: &[u8]) -> Result<Vec<String>, String> {
    let found = match read_safetensors_header(path) {
        Ok(found) => found,
        Err(e) => {
            let msg = e.to_string();
            let name = path.display().to_string();
            return if msg.contains(&name) {
                Err(msg)
            } else {
                Ok(vec![format!("error without the file name: {msg}")])
            };
        }
    };
    let mut v = Vec::new();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data_len = (bytes.len() - 8 - n) as u128;
    for (name, info) in &found {
        let entry = &header[name];
        let offs: Vec<u128> =
            entry["data_offsets"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap().into()).collect();
        let size = DTYPES.iter().chain(&[("U64", 8)]).find(|d| d.0 == info.dtype).map(|d| d.1 as u128);
        let numel = info.shape.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
        match (size, numel) {
            (Some(size), Some(numel))
                if offs[1] >= offs[0] && offs[1] - offs[0] == numel * size && offs[1] <= data_len => {}
            _ => v.push(format!(
                "{name}: {} {:?} accepted with data_offsets {offs:?} ({data_len} data bytes)",
                info.dtype, info.shape
            )),
        }
        if info.file != path {
            v.push(format!("{name}: file {}", info.file.display()));
        }
    }
    Ok(v)
}

/// Ways to break a valid file.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    HeaderLength(u64),
    Shape(usize, Vec<u64>),
    Offsets(usize, u64, u64),
    Dtype(usize, String),
    Entry(usize, String),
    FlipByte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let dim =
        prop_oneof![4 => 0u64..8, 1 => any::<u64>(), 1 => Just(1u64 << 32), 1 => Just(1u64 << 62), 1 => Just(u64::MAX)];
    let off = prop_oneof![3 => 0u64..200, 1 => any::<u64>()];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        prop_oneof![any::<u64>(), 0u64..300, Just(100 << 20), Just(u64::MAX), Just(u64::MAX - 7)]
            .prop_map(Mutation::HeaderLength),
        (any::<usize>(), prop::collection::vec(dim, 0..4)).prop_map(|(i, s)| Mutation::Shape(i, s)),
        (any::<usize>(), off.clone(), off).prop_map(|(i, a, b)| Mutation::Offsets(i, a, b)),
        (any::<usize>(), prop_oneof!["[A-Z0-9_]{0,8}", Just("U64".to_string())])
            .prop_map(|(i, d)| Mutation::Dtype(i, d)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "1",
                "null",
                "[]",
                "\"x\"",
                "{}",
                "{\"dtype\":\"F32\"}",
                "{\"dtype\":\"F32\",\"shape\":[1]}",
                "{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}",
                "{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}",
                "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}",
                "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}",
                "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}",
                "{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}",
            ])
            .prop_map(String::from)
        )
            .prop_map(|(i, e)| Mutation::Entry(i, e)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
    ]
}

fn apply(tensors: &[Tensor], metadata: bool, m: &Mutation) -> Vec<u8> {
    let (mut header, data) = file_of(tensors, metadata);
    let names: Vec<String> = header.keys().cloned().collect();
    let pick = |i: usize| names.get(i % names.len().max(1)).cloned().unwrap_or_else(|| "extra".into());
    match m {
        Mutation::Truncate(at) => {
            let b = bytes_of(&header, data);
            let at = at % (b.len() + 1);
            return b[..at].to_vec();
        }
        Mutation::HeaderLength(n) => {
            let mut b = bytes_of(&header, data);
            b[..8].copy_from_slice(&n.to_le_bytes());
            return b;
        }
        Mutation::FlipByte(i, x) => {
            let mut b = bytes_of(&header, data);
            let i = i % b.len();
            b[i] ^= x;
            return b;
        }
        Mutation::Shape(i, s) => {
            let e = header.entry(pick(*i)).or_insert(serde_json::json!({"dtype": "F32", "data_offsets": [0, 0]}));
            e["shape"] = serde_json::json!(s);
        }
        Mutation::Offsets(i, a, b) => {
            let e = header.entry(pick(*i)).or_insert(serde_json::json!({"dtype": "U8", "shape": [1]}));
            e["data_offsets"] = serde_json::json!([a, b]);
        }
        Mutation::Dtype(i, d) => {
            let e = header.entry(pick(*i)).or_insert(serde_json::json!({"shape": [0], "data_offsets": [0, 0]}));
            e["dtype"] = serde_json::json!(d);
        }
        Mutation::Entry(i, raw) => {
            header.insert(pick(*i), serde_json::from_str(raw).unwrap());
        }
    }
    bytes_of(&header, data)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A valid file is read back exactly: every tensor with its dtype and shape.
    #[test]
    fn valid_files_are_read_back_exactly(ts in tensors(), metadata in any::<bool>()) {
        let (header, data) = file_of(&ts, metadata);
        let f = TempFile::new("valid", &bytes_of(&header, data));
        let found = read_safetensors_header(&f.0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: BTreeMap<String, (String, Vec<usize>)> =
            ts.iter().map(|(n, d, s)| (n.clone(), (DTYPES[*d].0.to_string(), s.iter().map(|&x| x as usize).collect()))).collect();
        let got: BTreeMap<String, (String, Vec<usize>)> =
            found.into_iter().map(|(n, i)| (n, (i.dtype, i.shape))).collect();
        prop_assert_eq!(got, want);
    }

    /// A valid file broken in one way (truncated, wrong header length, a changed shape, offsets, dtype
    /// or entry, a flipped byte) is refused with its name in the error, or, if still accepted, keeps
    /// every promise of an accepted header.
    #[test]
    fn broken_files_are_refused_by_name_or_consistent(ts in tensors(), metadata in any::<bool>(), m in mutation()) {
        let bytes = apply(&ts, metadata, &m);
        let f = TempFile::new("broken", &bytes);
        match accepted_problems(&f.0, &bytes) {
            Ok(v) => prop_assert!(v.is_empty(), "{:?}: {}", m, v.join("; ")),
            Err(_named) => {}
        }
    }

    /// Arbitrary bytes (mostly short; some starting with a plausible header length): never a panic, and
    /// an error names the file.
    #[test]
    fn arbitrary_bytes_are_refused_by_name(head in prop_oneof![any::<u64>(), 0u64..64], tail in prop::collection::vec(any::<u8>(), 0..96), raw in any::<bool>()) {
        let mut bytes = if raw { Vec::new() } else { head.to_le_bytes().to_vec() };
        bytes.extend(tail);
        let f = TempFile::new("bytes", &bytes);
        if let Ok(v) = accepted_problems(&f.0, &bytes) {
            prop_assert!(v.is_empty(), "{}", v.join("; "));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the header reader accepts, mapping the file (the path every model load takes) works, or
    /// its error names the file.
    #[test]
    fn mapping_an_accepted_file_works_or_names_it(ts in tensors(), m in prop::option::of(mutation())) {
        let bytes = match &m {
            Some(m) => apply(&ts, false, m),
            None => { let (h, d) = file_of(&ts, false); bytes_of(&h, d) }
        };
        let f = TempFile::new("map", &bytes);
        if let Err(e) = from_safetensors(std::slice::from_ref(&f.0), DType::F32, &Device::Cpu) {
            let msg = chain(&e);
            prop_assert!(msg.contains(&f.0.display().to_string()), "{:?}: {}", m, msg);
        }
    }
}

/// Regression (found by `broken_files_are_refused_by_name_or_consistent`): a shape whose element count
/// overflows (`[2^32, 2^32]` of BOOL, `[2^62, 8]` of F32) wrapped to 0 bytes and was accepted with an
/// empty byte range; it is refused now, naming the file and the tensor.
#[test]
fn an_overflowing_shape_is_refused() {
    for (dtype, shape) in [("BOOL", "[4294967296, 4294967296]"), ("F32", "[4611686018427387904, 8]")] {
        let header = format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[0,0]}}}}"#);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        let f = TempFile::new("overflow", &bytes);
        let err = read_safetensors_header(&f.0).unwrap_err().to_string();
        assert!(err.contains(&f.0.display().to_string()) && err.contains("tensor t"), "{err}");
    }
}
