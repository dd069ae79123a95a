//! The embedding engine (TransE on wgpu compute pipelines and a native CPU backend); built in the engine issue.
