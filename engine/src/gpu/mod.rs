//! The GPU backend: everything that touches wgpu lives here. A `GpuContext`
//! holds the device, its queue and the compiled pipelines; kernels take the
//! context, so tests create one themselves. Kernels are WGSL files in
//! `shaders/`, each checked against the CPU kernels.
//!
//! Adapter choice: `QUIVER_ADAPTER` (a substring of the adapter's name) picks
//! one; otherwise the best hardware GPU (discrete, integrated, virtual).
//! Software adapters (Mesa's lavapipe) are used only when asked for
//! (`--device gpu`, [`AdapterChoice::AnyIncludingSoftware`]).

use crate::config::Score;
use crate::{EngineError, Result};

mod score;
mod step;

pub use step::{StepBatch, StepTables};

/// Which adapters may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterChoice {
    /// Hardware GPUs only (`--device auto`).
    Hardware,
    /// Any adapter, software ones included (`--device gpu`).
    AnyIncludingSoftware,
}

/// A device, its queue and the pipelines, built once and reused.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    score: wgpu::ComputePipeline,
    /// `shaders/rank.wgsl`.
    rank: wgpu::ComputePipeline,
    /// `shaders/topk.wgsl`.
    topk: wgpu::ComputePipeline,
    /// `shaders/train.wgsl`'s entry points, in [`TRAIN_STAGES`] order.
    train: Vec<wgpu::ComputePipeline>,
    /// Largest storage binding, in bytes (lavapipe: 128 MiB).
    max_binding: u64,
    max_groups: u32,
}

/// Entry points of `shaders/train.wgsl`, in the order a step runs them.
const TRAIN_STAGES: [&str; 6] = ["gather_q", "scores", "loss", "grad_q", "grad_k", "apply"];

fn score_code(kind: Score) -> u32 {
    match kind {
        Score::Dot => 0,
        Score::L2 => 1,
        Score::L1 => 2,
    }
}

fn gpu_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Gpu(e.to_string())
}

impl GpuContext {
    /// Finds an adapter and builds the pipelines; `Ok(None)` when there is no
    /// suitable adapter.
    pub fn new(choice: AdapterChoice) -> Result<Option<Self>> {
        // wgpu's own environment variables (WGPU_BACKEND, ...) apply too.
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends &= wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let instance = wgpu::Instance::new(desc);
        let wanted = std::env::var("QUIVER_ADAPTER").ok().map(|s| s.to_lowercase());
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let mut adapters: Vec<wgpu::Adapter> =
            pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .filter(|a| {
                    let info = a.get_info();
                    match &wanted {
                        Some(w) => info.name.to_lowercase().contains(w),
                        None => {
                            choice == AdapterChoice::AnyIncludingSoftware
                                || info.device_type != wgpu::DeviceType::Cpu
                        }
                    }
                })
                .collect();
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let Some(adapter) = adapters.into_iter().next() else {
            return Ok(None);
        };
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("quiver"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(gpu_err)?;
        // Pipelines (auto layouts), built once: entry points of each shader.
        let pipelines = |label: &str, source: &str, entries: &[&str]| -> Vec<wgpu::ComputePipeline> {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            entries
                .iter()
                .map(|entry| {
                    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    })
                })
                .collect()
        };
        let one = |label: &str, source: &str| pipelines(label, source, &["main"]).remove(0);
        let score = one("score.wgsl", include_str!("../../../shaders/score.wgsl"));
        let rank = one("rank.wgsl", include_str!("../../../shaders/rank.wgsl"));
        let topk = one("topk.wgsl", include_str!("../../../shaders/topk.wgsl"));
        let train = pipelines(
            "train.wgsl",
            include_str!("../../../shaders/train.wgsl"),
            &TRAIN_STAGES,
        );
        Ok(Some(Self {
            rank,
            topk,
            train,
            info: adapter.get_info(),
            max_binding: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
            max_groups: limits.max_compute_workgroups_per_dimension,
            device,
            queue,
            score,
        }))
    }

    /// The adapter in use, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn adapter(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Rows per piece, (queries, candidates), so that every binding fits the
    /// device and every dispatch stays within its group limits.
    fn pieces(&self, c: usize, m: usize, d: usize) -> (usize, usize) {
        let max_rows = (self.max_binding / (d * 4) as u64)
            .min(16 * self.max_groups as u64)
            .max(1) as usize;
        let m_piece = max_rows.min(m.max(1));
        let c_piece = max_rows
            .min((self.max_binding / (4 * m_piece as u64)).max(1) as usize)
            .min(c.max(1));
        (c_piece, m_piece)
    }

    /// A buffer holding `contents` (4 zero bytes when empty: bindings may not be empty).
    fn buffer(&self, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: if contents.is_empty() { &[0; 4] } else { contents },
            usage,
        })
    }

    /// An uninitialised storage buffer of `words` 4-byte words.
    fn scratch(&self, label: &str, words: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (4 * words.max(1)) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A bind group giving `bufs` the bindings 0, 1, … of `pipe`'s layout.
    fn bind(&self, pipe: &wgpu::ComputePipeline, bufs: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Submits `enc` with copies of `bufs` (each its first `n` 4-byte words)
    /// and returns their contents once the device is done.
    fn read_back(
        &self,
        mut enc: wgpu::CommandEncoder,
        bufs: &[(&wgpu::Buffer, usize)],
    ) -> Result<Vec<Vec<u32>>> {
        let reads: Vec<wgpu::Buffer> = bufs
            .iter()
            .map(|(buf, n)| {
                let size = (4 * (*n).max(1)) as u64;
                let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.copy_buffer_to_buffer(buf, 0, &read, 0, size);
                read
            })
            .collect();
        self.queue.submit([enc.finish()]);
        let mut out = Vec::with_capacity(bufs.len());
        for (read, (_, n)) in reads.iter().zip(bufs) {
            let (tx, rx) = std::sync::mpsc::channel();
            read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(gpu_err)?;
            rx.recv().map_err(gpu_err)?.map_err(gpu_err)?;
            let data = read.slice(..).get_mapped_range().map_err(gpu_err)?;
            out.push(bytemuck::cast_slice::<u8, u32>(&data)[..*n].to_vec());
        }
        Ok(out)
    }
}

/// The bindings each entry point of `train.wgsl` uses (auto layouts hold only those).
fn binding_used(entry: &str, binding: u32) -> bool {
    let used: &[u32] = match entry {
        "gather_q" => &[0, 1, 2, 3, 4, 5],
        "scores" => &[0, 1, 3, 5, 6],
        "loss" => &[0, 4, 6, 7, 13],
        "grad_q" => &[0, 1, 3, 5, 6, 7, 8],
        "grad_k" => &[0, 1, 3, 5, 6, 7, 9],
        _ => &[0, 1, 2, 8, 9, 10, 11, 12],
    };
    used.contains(&binding)
}
