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
    /// Largest storage binding, in bytes (lavapipe: 128 MiB).
    max_binding: u64,
    max_groups: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ScoreParams {
    c: u32,
    m: u32,
    d: u32,
    kind: u32,
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
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("score.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/score.wgsl").into()),
        });
        let score = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("score"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Ok(Some(Self {
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

    /// `s[i*m + j] = score(q_i, k_j)` on the GPU, as [`crate::kernels`] does
    /// on the CPU. Candidates and queries are cut into pieces that fit the
    /// device's binding size and dispatch limits.
    pub fn scores(&self, kind: Score, q: &[f32], k: &[f32], d: usize) -> Result<Vec<f32>> {
        let (c, m) = (q.len() / d, k.len() / d);
        let mut out = vec![0f32; c * m];
        let row_bytes = (d * 4) as u64;
        // Pieces: at most 16·max_groups rows each way, and bindings within the limit.
        let max_rows = (self.max_binding / row_bytes)
            .min(16 * self.max_groups as u64)
            .max(1) as usize;
        let m_piece = max_rows.min(m.max(1));
        let c_piece = max_rows
            .min((self.max_binding / (4 * m_piece as u64)).max(1) as usize)
            .min(c.max(1));
        for c0 in (0..c).step_by(c_piece) {
            let cq = c_piece.min(c - c0);
            for m0 in (0..m).step_by(m_piece) {
                let mk = m_piece.min(m - m0);
                let part = self.score_piece(kind, &q[c0 * d..(c0 + cq) * d], &k[m0 * d..(m0 + mk) * d], d)?;
                for i in 0..cq {
                    out[(c0 + i) * m + m0..(c0 + i) * m + m0 + mk]
                        .copy_from_slice(&part[i * mk..(i + 1) * mk]);
                }
            }
        }
        Ok(out)
    }

    fn score_piece(&self, kind: Score, q: &[f32], k: &[f32], d: usize) -> Result<Vec<f32>> {
        use wgpu::util::DeviceExt;
        let (c, m) = (q.len() / d, k.len() / d);
        let params = ScoreParams {
            c: c as u32,
            m: m as u32,
            d: d as u32,
            kind: match kind {
                Score::Dot => 0,
                Score::L2 => 1,
                Score::L1 => 2,
            },
        };
        let dev = &self.device;
        let init = |label: &str, contents: &[u8], usage| {
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
        };
        let p = init("params", bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM);
        let qb = init("queries", bytemuck::cast_slice(q), wgpu::BufferUsages::STORAGE);
        let kb = init("candidates", bytemuck::cast_slice(k), wgpu::BufferUsages::STORAGE);
        let size = (4 * c * m).max(4) as u64;
        let sb = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("scores"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let layout = self.score.get_bind_group_layout(0);
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("score"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: p.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: qb.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: kb.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: sb.as_entire_binding(),
                },
            ],
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("score") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("score"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.score);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(m.div_ceil(16) as u32, c.div_ceil(16) as u32, 1);
        }
        enc.copy_buffer_to_buffer(&sb, 0, &read, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(gpu_err)?;
        rx.recv().map_err(gpu_err)?.map_err(gpu_err)?;
        let data = read.slice(..).get_mapped_range().map_err(gpu_err)?;
        let out = bytemuck::cast_slice::<u8, f32>(&data)[..c * m].to_vec();
        drop(data);
        read.unmap();
        Ok(out)
    }
}
