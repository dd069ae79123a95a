//! A trained model: one embedding table per node type, one translation vector
//! per relation, and the optimizer's row state; stored in the database as one
//! model segment (arrays: relations, relation state, then per node type its
//! table and its state).

use quiver_storage::Database;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::{EngineError, Result};

/// Embeddings of every node and relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// How it was (or will be) trained.
    pub config: TrainConfig,
    /// Per node type: `count × dim` row-major.
    pub nodes: Vec<Vec<f32>>,
    /// `relations × dim` row-major.
    pub relations: Vec<f32>,
    /// Adagrad accumulators, one per node row.
    pub(crate) node_state: Vec<Vec<f32>>,
    /// Adagrad accumulators, one per relation.
    pub(crate) relation_state: Vec<f32>,
}

/// What is stored beside the arrays.
#[derive(Serialize, Deserialize)]
struct Settings {
    config: TrainConfig,
    node_counts: Vec<u32>,
    relations: usize,
}

impl Model {
    /// A freshly initialised model: rows uniform in ±init_scale/√dim.
    pub fn init(config: &TrainConfig, node_counts: &[u32], relations: usize) -> Self {
        let d = config.dim;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let bound = config.init_scale / (d as f32).sqrt();
        let mut table = |rows: usize| -> Vec<f32> {
            (0..rows * d)
                .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound)
                .collect()
        };
        let nodes: Vec<Vec<f32>> = node_counts.iter().map(|&n| table(n as usize)).collect();
        let relations = table(relations);
        Self {
            config: config.clone(),
            node_state: node_counts.iter().map(|&n| vec![0.0; n as usize]).collect(),
            relation_state: vec![0.0; relations.len() / d.max(1)],
            nodes,
            relations,
        }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// The embedding of node `id` of type `ty`.
    pub fn node(&self, ty: u32, id: u32) -> &[f32] {
        let d = self.dim();
        self.nodes
            .get(ty as usize)
            .and_then(|t| t.get(id as usize * d..(id as usize + 1) * d))
            .unwrap_or(&[])
    }

    /// The translation vector of relation `rel`.
    pub fn relation(&self, rel: u32) -> &[f32] {
        let d = self.dim();
        self.relations
            .get(rel as usize * d..(rel as usize + 1) * d)
            .unwrap_or(&[])
    }

    /// Stores the model in `db` under `name`, replacing any model of that name.
    pub fn save(&self, db: &Database, name: &str) -> Result<()> {
        let settings = Settings {
            config: self.config.clone(),
            node_counts: self.node_state.iter().map(|s| s.len() as u32).collect(),
            relations: self.relation_state.len(),
        };
        let settings = serde_json::to_string(&settings).map_err(|e| EngineError::Config(e.to_string()))?;
        let mut arrays: Vec<&[f32]> = vec![&self.relations, &self.relation_state];
        for (t, s) in self.nodes.iter().zip(&self.node_state) {
            arrays.push(t);
            arrays.push(s);
        }
        db.save_model(name, &settings, &arrays)?;
        Ok(())
    }

    /// Loads model `name` from `db`, checking that its shapes are consistent.
    pub fn load(db: &Database, name: &str) -> Result<Self> {
        let stored = db.model(name)?;
        let bad = |m: &str| EngineError::Model {
            name: name.to_string(),
            message: m.to_string(),
        };
        let s: Settings =
            serde_json::from_str(&stored.info().settings).map_err(|e| bad(&format!("settings: {e}")))?;
        let d = s.config.dim;
        if stored.len() != 2 + 2 * s.node_counts.len() {
            return Err(bad("wrong number of arrays"));
        }
        let (rel, rel_state) = (stored.array(0).to_vec(), stored.array(1).to_vec());
        if rel.len() != s.relations * d || rel_state.len() != s.relations {
            return Err(bad("relation arrays have the wrong size"));
        }
        let (mut nodes, mut node_state) = (Vec::new(), Vec::new());
        for (t, &n) in s.node_counts.iter().enumerate() {
            let (table, state) = (stored.array(2 + 2 * t), stored.array(3 + 2 * t));
            if table.len() != n as usize * d || state.len() != n as usize {
                return Err(bad(&format!("arrays of node type {t} have the wrong size")));
            }
            nodes.push(table.to_vec());
            node_state.push(state.to_vec());
        }
        Ok(Self {
            config: s.config,
            nodes,
            relations: rel,
            node_state,
            relation_state: rel_state,
        })
    }
}
