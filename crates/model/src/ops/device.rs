//! CUDA graphs of a decode step ([`StepGraph`], [`capture_after_warmup`]), the single-stream CUDA
//! device ([`cuda_device`]), profiler control and device-memory use; on the CPU these are no-ops or
//! errors that name the missing `cuda` feature.

use candle_core::Result;

#[cfg(feature = "cuda")]
use super::cuda;

/// A captured decode step, replayed with [`StepGraph::launch`].
pub struct StepGraph {
    #[cfg(feature = "cuda")]
    graph: cuda::Graph,
}

impl std::fmt::Debug for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepGraph")
    }
}

impl StepGraph {
    /// Kernel nodes of the captured step: the kernels one replay launches (`None` when the driver
    /// could not list them).
    pub fn kernels(&self) -> Option<usize> {
        #[cfg(feature = "cuda")]
        {
            self.graph.kernel_nodes()
        }
        #[cfg(not(feature = "cuda"))]
        {
            None
        }
    }

    /// Replays the captured step on the device's stream (asynchronous).
    pub fn launch(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        {
            self.graph.launch()
        }
        #[cfg(not(feature = "cuda"))]
        {
            candle_core::bail!("CUDA graphs need the `cuda` feature")
        }
    }
}

/// Runs `step` once for real (warm-up: kernels loaded, candle's layout-parameter cache filled),
/// then captures a second, not executed, call of `step` in a CUDA graph. Returns `None` on the
/// CPU, or (with a warning) when capture fails; the caller then keeps running `step` eagerly.
pub fn capture_after_warmup(device: &candle_core::Device, step: &dyn Fn() -> Result<()>) -> Result<Option<StepGraph>> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => {
            let graph = cuda::capture(dev, step)?;
            Ok(graph.map(|graph| StepGraph { graph }))
        }
        _ => {
            step()?;
            Ok(None)
        }
    }
}

/// CUDA device `ordinal` for this crate's single-stream use: cudarc's per-buffer event tracking is
/// switched off (it is only needed across streams and it breaks CUDA-graph capture). Call it before
/// any tensor is created on the device.
pub fn cuda_device(ordinal: usize) -> Result<candle_core::Device> {
    #[cfg(feature = "cuda")]
    {
        cuda::single_stream_device(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        candle_core::bail!("this build has no CUDA support (rebuild with `--features cuda`)")
    }
}

/// Starts (`true`) or stops (`false`) collection by an attached CUDA profiler (`ncu
/// --profile-from-start off`, Nsight Systems' capture range); nothing on the CPU.
pub fn cuda_profiler(device: &candle_core::Device, on: bool) -> Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::profiler(on),
        _ => {
            let _ = on;
            Ok(())
        }
    }
}

/// Bytes of device memory in use (driver view: total − free), or `None` on the CPU.
pub fn device_memory_used(device: &candle_core::Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::memory_used(),
        _ => None,
    }
}

/// Whether the device's stream is being captured into a CUDA graph; always `false` on the CPU.
pub fn stream_capturing(device: &candle_core::Device) -> Result<bool> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => cuda::capturing(dev),
        _ => Ok(false),
    }
}

/// Bytes of device memory free (driver view, what a `cudaMalloc` outside candle can get), or `None`
/// on the CPU. Not to be called while the stream is captured.
pub fn device_memory_free(device: &candle_core::Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::memory_free(),
        _ => None,
    }
}
