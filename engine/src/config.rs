//! Training settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a triple is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Score {
    /// f = −‖h + r − t‖₁ (TransE with L1).
    L1,
    /// f = −‖h + r − t‖₂ (TransE with L2; PBG's translation + l2).
    L2,
    /// f = (h + r)·t (PBG's translation + dot, as in TwHIN).
    Dot,
}

/// Training loss over a positive and its negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Σ max(0, margin − f(pos) + f(neg)) (the TransE paper, PBG's ranking loss).
    Margin,
    /// Cross-entropy of the positive among positive and negatives (PBG's softmax).
    Softmax,
    /// Self-adversarial negative sampling (RotatE, Sun et al. 2019):
    /// −log σ(γ + f(pos)) − Σ pⱼ log σ(−γ − f(negⱼ)), with γ the margin and
    /// pⱼ the softmax of `adversarial_temperature` · f over the negatives,
    /// held constant in the gradient, so that hard negatives count most.
    Adversarial,
}

/// Penalty on the node rows a chunk touches, added to their gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Regularizer {
    /// λ‖x‖₂² (gradient 2λx).
    L2,
    /// λ‖x‖₃³, the nuclear 3-norm of Lacroix et al. (gradient 3λ·x·|x|).
    N3,
}

/// Parameter update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Row-wise Adagrad, as PBG: one accumulator per embedding row.
    Adagrad,
    /// Plain stochastic gradient descent.
    Sgd,
    /// Adam (β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸), element-wise and lazy: a row's
    /// moments and step count change only when a chunk touches it, as in
    /// sparse Adam. CPU backend only; state is 2d + 1 floats per row.
    Adam,
}

impl Optimizer {
    /// Floats of optimizer state per row of dimension `d`.
    pub fn state_width(self, d: usize) -> usize {
        match self {
            Optimizer::Adagrad | Optimizer::Sgd => 1,
            Optimizer::Adam => 2 * d + 1,
        }
    }
}

/// Edges of one relation left out of training, so that a model can be
/// judged on them ([`crate::recall`]); which ones is a function of the seed
/// and the edge alone, so that evaluation finds the same set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// Relation id.
    pub relation: u32,
    /// Share of that relation's edges held out, in (0, 1).
    pub fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Split by the unordered pair {src, dst}, so that an edge and its
    /// reverse (a symmetric friendship stored both ways) are held out
    /// together: with only one direction held out, the other one, kept in
    /// training, gives the answer away. quiver sets it for every new split;
    /// models stored before it existed have `false`.
    #[serde(default)]
    pub pairs: bool,
}

impl Holdout {
    /// True when edge (`rel`, `src`, `dst`) is held out.
    pub fn holds(&self, rel: u32, src: u32, dst: u32) -> bool {
        if rel != self.relation {
            return false;
        }
        let (src, dst) = if self.pairs {
            (src.min(dst), src.max(dst))
        } else {
            (src, dst)
        };
        draw(self.seed, src, dst) < self.fraction
    }
}

/// What a refresh starts from ([`TrainConfig::refresh`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshFrom {
    /// The model refreshed (its rows are the warm start, its record of the
    /// graph says which edges are new).
    pub model: String,
    /// Old edges at a node the change touched trained again per added
    /// edge (all of them when there are fewer).
    pub replay: f64,
}

/// A seeded uniform draw in [0, 1) for the edge (`src`, `dst`): a function
/// of the seed and the two ids alone, so that a split needs no storage.
pub(crate) fn draw(seed: u64, src: u32, dst: u32) -> f64 {
    let mut z = seed ^ ((src as u64) << 32 | dst as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The validation figure a run selects on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidMetric {
    /// Filtered mean reciprocal rank.
    Mrr,
    /// Filtered Hits@10.
    #[serde(rename = "hits@10")]
    Hits10,
}

/// Validation on edges the run holds out of the graph itself, the default
/// when no validation file is given: a seeded sample of the edges (of
/// `target`'s relation, or of all), chosen by the unordered node pair so
/// that an edge and its reverse (a friendship stored both ways, or two
/// relations between the same pair) are held out together, is left out of
/// training and scored as validation triples ([`crate::Validation`]) every
/// `every` epochs; the best epoch is kept and `patience` scorings without
/// improvement end the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoValid {
    /// The relation (id) whose edges are held out and scored: the user's
    /// task, e.g. Follows (None: every relation).
    pub target: Option<u32>,
    /// Share of those edges held out, in (0, 1); 0 until the run chooses it
    /// ([`AutoValid::choose_fraction`]), and stored chosen.
    pub fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Epochs between scorings.
    pub every: usize,
    /// Scorings without improvement before the run ends (0: never).
    pub patience: usize,
    /// What "better" means.
    pub metric: ValidMetric,
}

impl Default for AutoValid {
    fn default() -> Self {
        Self {
            target: None,
            fraction: 0.0,
            seed: 0x5eed,
            every: 1,
            patience: 3,
            metric: ValidMetric::Mrr,
        }
    }
}

/// Reads `false` / `true` / null or a table of [`AutoValid`]'s fields (so
/// that an unknown or wrong field is named in the error).
fn on_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AutoValid>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<AutoValid>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("true, false or a table of validation settings")
        }
        fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
            Ok(on.then(AutoValid::default))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            AutoValid::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V)
}

/// Graphs with fewer candidate edges than this get no automatic split:
/// too few held-out edges to judge by, and too few to spare.
pub const AUTO_VALID_MIN_EDGES: u64 = 2_000;

/// Epochs of a run with `epochs = 0`: a cap when it validates (it stops
/// earlier when validation stops improving), a fixed count when it does not.
pub const AUTO_EPOCHS: (usize, usize) = (50, 10);

impl AutoValid {
    /// True when edge (`rel`, `src`, `dst`) is held out.
    pub fn holds(&self, rel: u32, src: u32, dst: u32) -> bool {
        self.fraction > 0.0
            && self.target.is_none_or(|t| t == rel)
            && draw(self.seed, src.min(dst), src.max(dst)) < self.fraction
    }

    /// The share to hold out of `edges` candidate edges over `nodes` nodes
    /// at dimension `dim` (0: no split): about min(5,000, 5% of the edges)
    /// of them, and no more than one scoring of about 10¹¹ multiply-adds
    /// (each held-out edge is ranked against every node, both ways) allows,
    /// but at least 500; none below `AUTO_VALID_MIN_EDGES` (2,000).
    pub fn choose_fraction(edges: u64, nodes: u64, dim: usize) -> f64 {
        if edges < AUTO_VALID_MIN_EDGES {
            return 0.0;
        }
        let by_cost = (1e11 / (nodes.max(1) as f64 * dim.max(1) as f64)).max(500.0);
        let count = (edges as f64 * 0.05).min(5_000.0).min(by_cost);
        count / edges as f64
    }
}

/// What an edge's stored weight does in the loss (each edge's loss term is
/// multiplied by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeWeights {
    /// Every edge counts once (the default: engagement counts imported as
    /// weights, 1 to 10⁵, let a few edges swamp training; measured on a
    /// real network, who-to-follow Recall@10 0.15 ignored, 0.09 raw, 0.12 log1p).
    Ignore,
    /// The stored weight.
    Raw,
    /// ln(1 + w).
    Log1p,
    /// w divided by its relation's mean weight, so each relation's mean is 1.
    Normalize,
}

/// Which ends of a chunk's edges are corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    /// Both: every chunk trains its tails, then its heads (PBG, and two
    /// negatives per edge with chunks of one edge and one uniform negative).
    #[default]
    Both,
    /// One, the head or the tail at random per chunk: with chunks of one
    /// edge and one uniform negative, PyKEEN's basic sampler (one negative
    /// per positive, its end chosen at random). CPU backend only.
    Either,
}

/// Everything a training run needs to know; stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Embedding dimension (shared by all node types and relations).
    pub dim: usize,
    /// Passes over all buckets; 0 (the default): at most 50 when the run
    /// validates, stopping when validation stops improving, and 10 when it
    /// does not ([`AUTO_EPOCHS`]); stored as the number chosen.
    pub epochs: usize,
    /// Partitions per node type (P); the trainer walks P×P buckets.
    pub partitions: u32,
    /// Score function.
    pub score: Score,
    /// Predict heads with a relation vector of their own (queries t + r′
    /// against heads, as PBG's dynamic relations do) instead of t − r.
    pub reciprocal: bool,
    /// Loss.
    pub loss: Loss,
    /// Margin of the margin loss; γ of the adversarial loss.
    pub margin: f32,
    /// Temperature α of the adversarial loss's negative weights (0: uniform).
    pub adversarial_temperature: f32,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Penalty kind for `regularization`.
    pub regularizer: Regularizer,
    /// Weight λ of the penalty on touched node rows (0: none; relations are not penalised).
    pub regularization: f32,
    /// Learning rate for node embeddings.
    pub lr: f32,
    /// Learning rate for relation vectors (defaults to `lr`).
    pub relation_lr: Option<f32>,
    /// After epoch `lr_decay_from`, every epoch multiplies both learning
    /// rates by this (1: constant rates): an exponential schedule, as
    /// PyTorch's `ExponentialLR`, started late, so that the last epochs
    /// settle where the model is instead of wandering around it.
    pub lr_decay: f32,
    /// Epochs trained at the full learning rates before `lr_decay` applies.
    pub lr_decay_from: usize,
    /// Edges per chunk; each edge's in-batch negatives are the chunk's other edges.
    pub chunk_size: usize,
    /// Uniform negatives per chunk and side, shared by the chunk's edges.
    pub uniform_negatives: usize,
    /// How stored edge weights scale each edge's loss.
    pub weights: EdgeWeights,
    /// Loss weight of each named relation's edges (PBG's per-relation
    /// `weight`), multiplying the edge weights; a relation not named weighs 1.
    pub relation_weights: BTreeMap<String, f32>,
    /// Temperature α of relation sampling: every epoch, relation r's share
    /// of the trained edges is proportional to n_r^α (n_r its edges), the
    /// epoch's size unchanged, so that a dominant relation does not drown
    /// the rest; each edge is trained ⌊m_r⌋ times, once more with
    /// probability frac(m_r), where m_r = E·n_r^(α−1) / Σ n^α. 1: every
    /// edge once (no balance).
    pub relation_balance: f32,
    /// Use the chunk's other edges as negatives too.
    pub batch_negatives: bool,
    /// Which ends of a chunk's edges are corrupted.
    pub corrupt: Sides,
    /// Chunks mix the relations between the same node types, as PBG's
    /// dynamic relations do: each edge's query uses its own relation row,
    /// the in-batch negatives come from every relation's edges, and a
    /// relation is stepped in each chunk it appears in. Without it a chunk
    /// holds one relation, and one with few edges is stepped a few times an epoch.
    pub mix_relations: bool,
    /// For relations within one node type, also use the chunk's query
    /// entities as candidates: each is a negative for itself (h as its own
    /// tail) and for the other edges.
    pub self_negatives: bool,
    /// For distance scores, project touched node rows back into the ball of
    /// this radius after each update (the TransE paper's normalisation with
    /// 1); 0 leaves them free, as PBG does.
    pub max_norm: f32,
    /// Scale of the uniform initialisation: rows start in ±init_scale/√d
    /// (the default, about ±0.001 at d = 200, is PBG's 10⁻³).
    pub init_scale: f32,
    /// Seed for initialisation, shuffling and negative sampling.
    pub seed: u64,
    /// Resident partitions beyond those of the current bucket are dropped,
    /// least recently used first, while they take more than this (0: no limit).
    pub memory_budget_mib: usize,
    /// Visits of every bucket per epoch (PBG's `num_edge_chunks`): each
    /// visit trains every `passes`-th chunk of the bucket, so that with
    /// P > 1 the partitions and relation vectors move in smaller steps
    /// between swaps.
    pub passes: usize,
    /// With P > 1, rows of each node type kept in memory as pools:
    /// `foreign_sample / P` rows of each partition, drawn afresh after every
    /// bucket that trains the partition. A bucket's uniform negatives fall
    /// on the pools of the partitions it does not hold with those
    /// partitions' share of the type's rows, as at P = 1, and pooled rows
    /// are updated like resident ones; pools are stored with the model
    /// (`pool/T`) and hold the partition's newest rows. 0: negatives come
    /// only from the bucket's partitions, as in PBG.
    pub foreign_sample: usize,
    /// Chunks per GPU training step (each gives two sides: tails and heads).
    /// 1 reproduces the CPU's chunk-by-chunk updates; more fill a device.
    pub gpu_chunks: usize,
    /// Training threads (0: one per core). With more than one, updates race
    /// as in PBG's Hogwild and runs are no longer bit-for-bit repeatable.
    pub threads: usize,
    /// Edges left out of training (for recall evaluation).
    pub holdout: Option<Holdout>,
    /// Train on these relation ids only (empty: all relations).
    pub only_relations: Vec<u32>,
    /// Start from this stored model's rows instead of random ones (nodes it
    /// lacks start from their neighbours' rows, [`crate::Model::infer`]).
    pub warm_start: Option<String>,
    /// Weight λ of the penalty λ‖θ − θ_prev‖² that keeps touched node rows
    /// near the warm-start model's (0: none; CPU backend).
    pub drift_penalty: f32,
    /// At the end of training, build the approximate nearest-neighbour
    /// index of every node type with the default settings (`quiver index`
    /// for others), so that searches never meet a stale one.
    pub index: bool,
    /// A refresh of a stored model ([`crate::refresh::refresh_on_until`]): the run
    /// trains only the edges added since that model's state and a replay
    /// sample of its edges around them, warm started from it.
    pub refresh: Option<RefreshFrom>,
    /// Edges added or deleted since the model's state that start a refresh
    /// by itself (`quiver serve`, after the write that crosses it; the new
    /// version inherits the setting); 0: never.
    pub refresh_after: u64,
    /// The edges a refresh trains, computed from `refresh` when a run
    /// starts or resumes (not stored; set by the trainer).
    #[serde(skip)]
    #[doc(hidden)]
    pub scope: Option<crate::refresh::ScopeRef>,
    /// Validation on held-out edges when no validation file is given (the
    /// default; None: no split, no validation). In a config file, `false`
    /// turns it off, `true` or a table of [`AutoValid`]'s fields on.
    #[serde(deserialize_with = "on_or_off")]
    pub validation: Option<AutoValid>,
}

/// The defaults serve a graph without a config. Reciprocal relations, rows
/// in the unit ball and 200 uniform negatives were chosen on validation
/// across four graphs of different shapes (FB15k-237, WN18RR and two
/// TwHIN-like networks from the demo's generator, `bench/defaults.sh`): of
/// 16 combinations (reciprocal, `mix_relations`, `max_norm` 0 / 1, 50 / 200
/// negatives), the one whose validation MRR divided by the best on each
/// graph has the highest mean (0.948; the earlier defaults 0.690). The
/// score (translation + dot, as TwHIN) and the softmax loss were then
/// chosen the same way on real graphs of both kinds, with validation and
/// early stopping on (`bench/defaults.py`: the Last.fm and CiaoDVD social
/// networks, WN18RR, CoDEx-S and FB15k-237; 8 points of score, loss,
/// dimension and relation balance; mean 0.936 against 0.832 for L2 and
/// the margin loss).
impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dim: 200,
            epochs: 0,
            partitions: 1,
            score: Score::Dot,
            reciprocal: true,
            loss: Loss::Softmax,
            margin: 1.0,
            adversarial_temperature: 1.0,
            optimizer: Optimizer::Adagrad,
            regularizer: Regularizer::L2,
            regularization: 0.0,
            lr: 0.1,
            relation_lr: None,
            lr_decay: 1.0,
            lr_decay_from: 0,
            chunk_size: 50,
            uniform_negatives: 200,
            weights: EdgeWeights::Ignore,
            relation_weights: BTreeMap::new(),
            relation_balance: 1.0,
            batch_negatives: true,
            corrupt: Sides::Both,
            mix_relations: false,
            self_negatives: true,
            max_norm: 1.0,
            init_scale: 0.014,
            seed: 0,
            threads: 0,
            memory_budget_mib: 0,
            passes: 1,
            foreign_sample: 8000,
            gpu_chunks: 32,
            holdout: None,
            only_relations: Vec::new(),
            warm_start: None,
            drift_penalty: 0.0,
            index: false,
            refresh: None,
            refresh_after: 0,
            scope: None,
            validation: Some(AutoValid::default()),
        }
    }
}

/// Most training threads a run may ask for.
pub const MAX_THREADS: usize = 1024;

impl TrainConfig {
    /// Settings given as a JSON object (`CALL quiver.train({...})`, the
    /// server's `POST /api/train`): the defaults with the given keys
    /// replaced; an unknown key is an error naming it.
    pub fn from_settings(settings: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let known = serde_json::to_value(TrainConfig::default()).unwrap_or_default();
        if let Some(k) = settings.keys().find(|k| known.get(k.as_str()).is_none()) {
            return Err(format!("unknown setting `{k}`"));
        }
        serde_json::from_value(serde_json::Value::Object(settings)).map_err(|e| e.to_string())
    }

    /// The penalty's gradient at coordinate `x` (0 without regularization).
    pub(crate) fn reg_grad(&self, x: f32) -> f32 {
        match self.regularizer {
            Regularizer::L2 => 2.0 * self.regularization * x,
            Regularizer::N3 => 3.0 * self.regularization * x * x.abs(),
        }
    }

    /// The settings epoch `epoch` (0-based) trains with: the learning rates
    /// times `lr_decay` once for every epoch past `lr_decay_from`.
    pub(crate) fn at_epoch(&self, epoch: usize) -> TrainConfig {
        let past = (epoch + 1).saturating_sub(self.lr_decay_from);
        let scale = self.lr_decay.powi(past.min(i32::MAX as usize) as i32);
        TrainConfig {
            lr: self.lr * scale,
            relation_lr: self.relation_lr.map(|r| r * scale),
            ..self.clone()
        }
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::EngineError::Config(m.to_string()));
        if self.dim == 0 || self.dim > 65536 {
            return bad("dim must be in 1..=65536");
        }
        if self.partitions == 0 {
            return bad("partitions must be at least 1");
        }
        if self.threads > MAX_THREADS {
            return bad(&format!(
                "threads must be at most {MAX_THREADS} (0: one per core)"
            ));
        }
        if self.chunk_size == 0 {
            return bad("chunk_size must be at least 1");
        }
        if self.passes == 0 {
            return bad("passes must be at least 1");
        }
        if self.uniform_negatives == 0 && !self.batch_negatives {
            return bad("no negatives: set uniform_negatives > 0 or batch_negatives");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(&format!("lr = {}: it must be positive and finite", self.lr));
        }
        if let Some(r) = self.relation_lr.filter(|r| !(*r >= 0.0 && r.is_finite())) {
            return bad(&format!("relation_lr = {r}: it must be finite and not negative"));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad("lr_decay must be in (0, 1]");
        }
        if !self.max_norm.is_finite() || self.max_norm < 0.0 {
            return bad("max_norm must be finite and not negative");
        }
        if !self.regularization.is_finite() || self.regularization < 0.0 {
            return bad("regularization must be finite and not negative");
        }
        if !self.adversarial_temperature.is_finite() || self.adversarial_temperature < 0.0 {
            return bad("adversarial_temperature must be finite and not negative");
        }
        if !self.drift_penalty.is_finite() || self.drift_penalty < 0.0 {
            return bad("drift_penalty must be finite and not negative");
        }
        if self.drift_penalty > 0.0 && self.warm_start.is_none() {
            return bad("drift_penalty needs warm_start: the model to stay near");
        }
        if self
            .holdout
            .as_ref()
            .is_some_and(|h| !(h.fraction > 0.0 && h.fraction < 1.0))
        {
            return bad("holdout fraction must be in (0, 1)");
        }
        if !(self.relation_balance > 0.0 && self.relation_balance <= 1.0) {
            return bad(&format!(
                "relation_balance = {}: it must be in (0, 1] (1: no balance)",
                self.relation_balance
            ));
        }
        if let Some((r, w)) = (self.relation_weights.iter()).find(|(_, w)| !(w.is_finite() && **w >= 0.0)) {
            return bad(&format!(
                "relation_weights.{r} = {w}: it must be finite and not negative"
            ));
        }
        if let Some(v) = &self.validation {
            if !(0.0..1.0).contains(&v.fraction) {
                return bad("validation fraction must be in [0, 1) (0: chosen by the run)");
            }
            if v.every == 0 {
                return bad("validation every must be at least 1 epoch");
            }
        }
        if !self.margin.is_finite() || !self.init_scale.is_finite() || self.init_scale <= 0.0 {
            return bad("margin and init_scale must be finite (init_scale > 0)");
        }
        Ok(())
    }
}
