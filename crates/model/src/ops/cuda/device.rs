//! CUDA graphs of a decode step, the single-stream device, device memory and the profiler.

use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, Result};

/// A CUDA graph of one captured decode step, and its kernel nodes.
pub(in crate::ops) struct Graph(candle_core::cuda_backend::cudarc::driver::CudaGraph, Option<usize>);

impl Graph {
    pub(in crate::ops) fn launch(&self) -> Result<()> {
        self.0.launch().w()
    }

    /// Kernel nodes of the captured graph, counted at capture (`None` when the driver could not
    /// list them).
    pub(in crate::ops) fn kernel_nodes(&self) -> Option<usize> {
        self.1
    }
}

/// Kernel nodes of `graph` (`cuGraphGetNodes`, `cuGraphNodeGetType`): the kernels one replay
/// launches. Memory copies and sets are not counted.
fn count_kernel_nodes(graph: &candle_core::cuda_backend::cudarc::driver::CudaGraph) -> Result<usize> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let g = graph.cu_graph();
    let mut n: usize = 0;
    // SAFETY: `g` is the live graph `graph` owns (not destroyed here); a null node array asks for
    // the node count only.
    unsafe { sys::cuGraphGetNodes(g, std::ptr::null_mut(), &mut n) }.result().w()?;
    let mut nodes: Vec<sys::CUgraphNode> = vec![std::ptr::null_mut(); n];
    // SAFETY: `nodes` holds `n` writable entries; the driver writes at most `n` and sets `n` to
    // what it wrote.
    unsafe { sys::cuGraphGetNodes(g, nodes.as_mut_ptr(), &mut n) }.result().w()?;
    let mut kernels = 0;
    for &node in nodes.iter().take(n) {
        let mut kind = sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
        // SAFETY: `node` is a node of the live graph, as the driver listed it; `kind` is writable.
        unsafe { sys::cuGraphNodeGetType(node, &mut kind) }.result().w()?;
        if kind == sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL {
            kernels += 1;
        }
    }
    Ok(kernels)
}

pub(in crate::ops) fn capture(dev: &CudaDevice, step: &dyn Fn() -> Result<()>) -> Result<Option<Graph>> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let _cache = dev.enable_cuda_graph_htod_cache();
    step()?; // the real first step doubles as the warm-up
    let stream = dev.cuda_stream();
    stream.synchronize().w()?;
    if let Err(e) = stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) {
        tracing::warn!("CUDA graph capture unavailable ({e}); decoding eagerly");
        return Ok(None);
    }
    let captured = step();
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH);
    match (captured, graph) {
        (Ok(()), Ok(Some(g))) => {
            g.upload().w()?;
            let kernels = count_kernel_nodes(&g)
                .inspect_err(|e| tracing::warn!("counting the kernels of the captured decode step: {e}"))
                .ok();
            Ok(Some(Graph(g, kernels)))
        }
        (captured, graph) => {
            tracing::warn!(
                "CUDA graph capture failed (step: {:?}, graph: {:?}); decoding eagerly",
                captured.err().map(|e| e.to_string()),
                graph.err().map(|e| e.to_string())
            );
            Ok(None)
        }
    }
}

pub(in crate::ops) fn single_stream_device(ordinal: usize) -> Result<candle_core::Device> {
    let device = candle_core::Device::new_cuda(ordinal)?;
    if let candle_core::Device::Cuda(dev) = &device {
        // SAFETY: this crate runs every kernel on the device's one stream, so no cross-stream
        // synchronisation is needed; no tensor exists on the device yet.
        unsafe { dev.disable_event_tracking() };
    }
    Ok(device)
}

/// Whether the device's stream is being captured (`cuStreamIsCapturing`: active or invalidated).
pub(in crate::ops) fn capturing(dev: &CudaDevice) -> Result<bool> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let status = dev.cuda_stream().capture_status().w()?;
    Ok(status != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE)
}

pub(in crate::ops) fn memory_free() -> Option<u64> {
    let (free, _) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
    Some(free as u64)
}

pub(in crate::ops) fn memory_used() -> Option<u64> {
    let (free, total) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
    Some((total - free) as u64)
}

pub(in crate::ops) fn profiler(on: bool) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    // SAFETY: plain driver calls without arguments; they only toggle profiler data collection.
    let status = unsafe {
        if on {
            sys::cuProfilerStart()
        } else {
            sys::cuProfilerStop()
        }
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        candle_core::bail!("cuProfiler{}: {status:?}", if on { "Start" } else { "Stop" })
    }
    Ok(())
}
