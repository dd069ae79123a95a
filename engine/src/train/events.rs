//! What a training run reports as it goes.

/// What one epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Summed loss over the buckets trained in this epoch.
    pub loss: f64,
    /// Positive edges trained.
    pub edges: u64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Share of that time spent loading and saving partitions.
    pub io_share: f64,
    /// Partitions brought into memory (read back or initialised) in this epoch.
    pub loads: u64,
}

/// What a training run reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainEvent {
    /// Bucket `bucket` of `buckets` in epoch `epoch` is trained and saved;
    /// `edges` and `loss` add up the epoch so far.
    Bucket {
        /// 0-based epoch.
        epoch: usize,
        /// 0-based bucket index in the epoch's order.
        bucket: usize,
        /// Buckets per epoch.
        buckets: usize,
        /// Edges trained in this epoch so far.
        edges: u64,
        /// Loss summed over this epoch so far.
        loss: f64,
    },
    /// While bucket `bucket` of `buckets` in epoch `epoch` trains (CPU
    /// backend, about every quarter second): `done` of its `chunks` chunks
    /// are trained, so that progress moves within a long bucket.
    Chunks {
        /// 0-based epoch.
        epoch: usize,
        /// 0-based bucket index in the epoch's order.
        bucket: usize,
        /// Buckets per epoch.
        buckets: usize,
        /// Chunks of this visit trained so far.
        done: usize,
        /// Chunks of this visit.
        chunks: usize,
    },
    /// An epoch is done.
    Epoch(EpochStats),
    /// The model was scored on the validation triples after `epoch`.
    Validation {
        /// 0-based epoch.
        epoch: usize,
        /// Filtered MRR.
        mrr: f64,
        /// Filtered Hits@10.
        hits10: f64,
        /// The epoch of the best score so far (this one when it is the best).
        best_epoch: usize,
        /// The best score so far, in the run's metric.
        best: f64,
    },
    /// Before the first bucket (of a new or resumed run): the epochs it
    /// trains at most, and the edges it holds out of training as its own
    /// validation ([`crate::AutoValid`]; 0 with a validation file or none).
    Start {
        /// Epochs of the run (a cap when validation stops it early).
        epochs: usize,
        /// Edges held out as validation.
        held_out: u64,
        /// Their share of the candidate edges.
        fraction: f64,
        /// The relation held out and scored, when one is.
        target: Option<u32>,
    },
    /// Before training: relation `relation`'s edge weights, which the loss
    /// uses ([`crate::TrainConfig::weights`]), span two or more orders of magnitude.
    WeightSpread {
        /// Relation id.
        relation: u32,
        /// Smallest stored weight.
        min: f32,
        /// Largest stored weight.
        max: f32,
    },
}
