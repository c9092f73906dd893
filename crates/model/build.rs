//! Compiles `src/ops/kernels.cu` to PTX with nvcc when the `cuda` feature is on (nothing otherwise).
//! nvcc is `$CUDA_HOME/bin/nvcc` or the one on `PATH`; the target is `compute_$CUDA_COMPUTE_CAP`
//! (default 80: PTX that the driver JIT-compiles for any newer GPU).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/ops/kernels.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("occ_kernels.ptx");
    let nvcc = std::env::var_os("CUDA_HOME")
        .map(|h| PathBuf::from(h).join("bin").join("nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap: String = cap.chars().filter(char::is_ascii_digit).collect();
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "--std=c++17", &format!("-arch=compute_{cap}"), "-o"])
        .arg(&out)
        .arg("src/ops/kernels.cu")
        .status()
        .unwrap_or_else(|e| panic!("occ-model: cannot run {} to build the CUDA kernels: {e}", nvcc.display()));
    assert!(status.success(), "occ-model: nvcc failed on src/ops/kernels.cu ({status})");
}
