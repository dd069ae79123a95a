//! quiver's embedding engine: TransE (h + r ≈ t) trained PyTorch-BigGraph
//! style against the edge buckets in storage, and scored for link prediction.
//!
//! The trainer walks the P×P buckets of an epoch and trains each bucket in
//! chunks that share their negatives (so a chunk's scores are one matrix
//! product), updating rows with row-wise Adagrad, SGD or lazy Adam, on the
//! native CPU kernels or the WGSL training step on a GPU through wgpu
//! (`Device`); evaluation, retrieval, int8 copies, mixtures and recall sit
//! on the same models.

mod ann;
mod config;
mod eval;
mod gpu;
mod kernels;
mod mixture;
mod model;
mod quant;
pub mod recall;
pub mod refresh;
mod retrieval;
mod side;
mod train;

pub use ann::{
    build_index, estimate_bytes, index_key, index_model, model_version, AnnIndex, IndexInfo, IndexSettings,
    Quantization,
};
pub use config::{
    AutoValid, EdgeWeights, Holdout, Loss, Optimizer, RefreshFrom, Regularizer, Score, Sides, TrainConfig,
    ValidMetric, AUTO_EPOCHS,
};
pub use eval::{evaluate, read_triples, EvalReport, Triple};
pub use gpu::{AdapterChoice, GpuContext, StepBatch, StepTables};
pub use mixture::{kmeans, KMeans, Mixtures};
pub use model::Model;
pub use quant::Int8Rows;
pub use retrieval::{overlap, Index, Metric};
pub use train::{
    best_model_name, resume, resume_on, resume_on_until, settled, train, train_on, train_on_until,
    EpochStats, TrainEvent, Validation,
};

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// From the storage layer.
    #[error(transparent)]
    Storage(#[from] quiver_storage::StorageError),
    /// A training or evaluation setting that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stored model that does not match the database or this build.
    #[error("model `{name}`: {message}")]
    Model {
        /// The model name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A test or filter file that cannot be read.
    #[error("{0}")]
    Input(String),
    /// Something that cannot happen did (a broken invariant of quiver's own);
    /// the message says what, for a report.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// A training run failed while it ran (a worker thread could not start or panicked).
    #[error("training failed: {0}")]
    Training(String),
    /// The GPU backend failed, or no adapter was found.
    #[error("GPU: {0}")]
    Gpu(String),
    /// A run stopped on request at a bucket boundary; the model is saved
    /// there and resumes from it.
    #[error("training of `{0}` stopped on request; resume continues it")]
    Stopped(String),
    /// A build stopped on request; nothing of it was stored.
    #[error("stopped on request; nothing was stored")]
    Interrupted,
}

/// Where scoring runs.
pub enum Device {
    /// The native CPU kernels.
    Cpu,
    /// A wgpu adapter.
    Gpu(Box<GpuContext>),
}

impl Device {
    /// `auto`: a hardware GPU if wgpu finds one, else the CPU; `gpu`: any
    /// adapter, software ones (lavapipe) included, or an error; `cpu`.
    pub fn select(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Device::Cpu),
            "auto" => {
                Ok(GpuContext::new(AdapterChoice::Hardware)?
                    .map_or(Device::Cpu, |g| Device::Gpu(Box::new(g))))
            }
            "gpu" => GpuContext::new(AdapterChoice::AnyIncludingSoftware)?
                .map(|g| Device::Gpu(Box::new(g)))
                .ok_or_else(|| {
                    EngineError::Gpu(
                        "no GPU adapter found; for a software one install mesa-vulkan-drivers".into(),
                    )
                }),
            other => Err(EngineError::Config(format!(
                "device `{other}`: expected auto, gpu or cpu"
            ))),
        }
    }

    /// What runs the kernels, for logs.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "CPU".into(),
            Device::Gpu(g) => format!("GPU {}", g.adapter()),
        }
    }
}

/// Short for `Result<T, EngineError>`.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
